"""Where VINN's error comes from: the same kNN regression over different keys, offline on the validation demos.

    python benchmarks/representations.py --task door          # needs run_door.py's training-0 policies
    python benchmarks/representations.py --task door --out benchmarks/results/representations

For one task's benchmark split (the first 50 demos are the database, the next 10 validate), VINN's regression (k
nearest by L2, softmin weights, k chosen on the validation demos) over:
- VINN's BYOL trunk and an untrained one, each pooled as the paper does (global average of the last feature map) and
  in ways that keep *where* features are: the last map averaged to 2x2 or kept whole (3x3 at 84 px), the third
  stage's map averaged to 3x3, and spatial-softmax keypoints (each channel's expected image position);
- the trunks of the same training's BCs (robomimic's recipe and the paper's), learned from the actions;
and, for reference, the BCs' own predictions. Offline error is not closed-loop success, but one regression over many
keys separates the representation's share of VINN's error from the regression's. Validation demos only: no episodes.

`--crop-scales 0.9 1.0` adds BYOL encoders trained like VINN's but with RandomResizedCrop's area drawn from (s, 1)
instead of (0.6, 1): crops that move the scene by less keep more of where things are (cached like VINN's).
`--byol-epochs 16` adds BYOL trained like VINN's for that many epochs: is the CPU default (4) too short to learn keys?
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import tyro

from vinn_policy.actions import GRIPPER_INDEX
from vinn_policy.baselines import load_policy
from vinn_policy.encoder import Encoder, expected_positions, preprocess
from vinn_policy.harness.args import BenchmarkArgs
from vinn_policy.harness.offline import OfflineConfig, gripper_accuracy, knn_curve, translation_mse
from vinn_policy.harness.pipeline import cached_byol, ensure_demos
from vinn_policy.harness.results import environment, markdown_table, write_results
from vinn_policy.policy import VINNPolicy


@dataclass
class Args:
    task: str = "door"
    run_dir: str | None = None
    """Where run_<task>.py saved its policies (default runs/<task>); training 0's vinn, bc and bc_paper are read."""
    out: str = "runs/representations"
    """Writes <name>.{json,md} here."""
    name: str | None = None
    """The results' file name (default: the task's), so that runs with other flags do not overwrite each other."""
    data_dir: str = "data"
    crop_scales: tuple[float, ...] = ()
    """Also BYOL (training 0's config) with crop areas drawn from (s, 1) for each s, trained on the database demos."""
    byol_epochs: tuple[int, ...] = ()
    """Also BYOL (training 0's config) trained for each of these numbers of epochs, on the database demos."""
    cache_dir: str = "runs/cache"
    smoke: bool = False


@torch.inference_mode()
def feature_maps(encoder: Encoder, frames: np.ndarray, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """A plain ResNet trunk's third- and fourth-stage feature maps of every frame, (N, C, h, w) each."""
    t = encoder.trunk.eval()
    third, fourth = [], []
    for i in range(0, len(frames), batch):
        x = preprocess(frames[i : i + batch], encoder.config).contiguous(memory_format=torch.channels_last)
        x = t.layer2(t.layer1(t.maxpool(t.relu(t.bn1(t.conv1(x))))))
        x3 = t.layer3(x)
        third.append(x3.float())
        fourth.append(t.layer4(x3).float())
    return torch.cat(third), torch.cat(fourth)


def keypoints(maps: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) -> (N, 2C): each channel's expected image position (spatial softmax without a learned projection)."""
    return expected_positions(maps).flatten(1)


def pooled_keys(encoder: Encoder, frames: np.ndarray) -> dict[str, np.ndarray]:
    third, fourth = feature_maps(encoder, frames)
    keys = {"global average (the paper's)": fourth.mean((2, 3)), "last map, 2x2 average": F.adaptive_avg_pool2d(fourth, 2).flatten(1),
            f"last map, whole ({fourth.shape[2]}x{fourth.shape[3]})": fourth.flatten(1),
            "third map, 3x3 average": F.adaptive_avg_pool2d(third, 3).flatten(1),
            "third map, keypoints": keypoints(third), "last map, keypoints": keypoints(fourth)}
    return {name: k.numpy().astype(np.float32) for name, k in keys.items()}


def regression_error(keys: np.ndarray, data, train: np.ndarray, val: np.ndarray) -> dict:
    curve = knn_curve(keys, data.actions, data.episode_ids, train, val, OfflineConfig(gripper_index=GRIPPER_INDEX))
    best = int(np.argmin(curve["mse"]))
    return {"dim": int(keys.shape[1]), "k": curve["k"][best], "mse": curve["mse"][best], "gripper_accuracy": curve["gripper_accuracy"][best]}


def main(args: Args) -> dict:
    bench = BenchmarkArgs(task=args.task, smoke=args.smoke, data_dir=args.data_dir, run_dir=args.run_dir, cache_dir=args.cache_dir)
    policies = bench.work_dir / "policies" / "training0"
    if not (policies / "vinn" / "config.json").exists():
        raise SystemExit(f"{policies / 'vinn'} holds no saved VINN: run benchmarks/run_{args.task}.py first, or pass --run-dir.")
    data = ensure_demos(args.task, bench.demos + bench.val_demos, bench.data_dir, image_size=bench.image_px, camera=bench.camera)
    train = np.flatnonzero(data.episode_ids < bench.demos)
    val = np.flatnonzero(data.episode_ids >= data.num_episodes - bench.val_demos)
    byol = VINNPolicy.load(policies / "vinn").encoder
    torch.manual_seed(0)
    rows = [{"trunk": "VINN's BYOL", "key": name, **regression_error(k, data, train, val)} for name, k in pooled_keys(byol, data.frames).items()]
    rows += [{"trunk": "untrained (seed 0)", "key": name, **regression_error(k, data, train, val)}
             for name, k in pooled_keys(Encoder(byol.config), data.frames).items()]
    extra = {f"BYOL, crop area ({scale:g}, 1)": replace(bench.byol_config(0), crop_scale=(scale, 1.0)) for scale in args.crop_scales}
    extra |= {f"BYOL, {epochs} epochs": replace(bench.byol_config(0), epochs=epochs) for epochs in args.byol_epochs}
    byol_losses = {}
    for label, config in extra.items():
        encoder, info = cached_byol(data.frames[train], config, bench.cache_dir)
        byol_losses[label] = info["losses"]
        rows += [{"trunk": label, "key": name, **regression_error(k, data, train, val)} for name, k in pooled_keys(encoder, data.frames).items()]
    missing = []
    for method, key in (("bc", "spatial-softmax keypoints, projected"), ("bc_paper", "global average")):
        if not (policies / method / "config.json").exists():
            missing.append(method)
            continue
        bc = load_policy(policies / method)
        label = {"bc": "BC's (robomimic)", "bc_paper": "BC's (paper)"}[method]
        rows.append({"trunk": label, "key": key, **regression_error(bc.encoder.embed(data.frames), data, train, val)})
        pred = bc.act_batch(data.frames[val])
        rows.append({"trunk": label, "key": "(the BC's own prediction)", "dim": None, "k": None,
                     "mse": translation_mse(pred, data.actions[val]), "gripper_accuracy": gripper_accuracy(pred, data.actions[val], GRIPPER_INDEX)})
    table = [[r["trunk"], r["key"], r["dim"] or "–", r["k"] or "–", f"{r['mse']:.4f}", f"{r['gripper_accuracy']:.0%}"] for r in rows]
    flags = ((f" --run-dir {args.run_dir}" if args.run_dir else "") + (f" --name {args.name}" if args.name else "")
             + (f" --crop-scales {' '.join(f'{s:g}' for s in args.crop_scales)}" if args.crop_scales else "")
             + (f" --byol-epochs {' '.join(map(str, args.byol_epochs))}" if args.byol_epochs else ""))
    md = [f"# Which key VINN's regression needs: {args.task}\n",
          f"`python benchmarks/representations.py --task {args.task}{flags}` · "
          f"training 0's policies in `{policies}` · {bench.demos} demos as the database, {bench.val_demos} validation demos "
          "queried; k (up to 50) is the one with the lowest validation error for each key (optimistic alike for every key). Translation "
          "MSE and gripper accuracy on the validation frames.\n",
          markdown_table(["trunk", "key", "dim", "k", "val MSE", "gripper acc"], table)]
    if byol_losses:
        md.append("\nBYOL loss at the last epoch: " + "; ".join(f"{label} {losses[-1]:.3f}" for label, losses in byol_losses.items()) + ".\n")
    if missing:
        md.append(f"\nNot in {policies}: {', '.join(missing)} (run run_{args.task}.py with them).\n")
    result = {"args": asdict(args), "environment": environment(), "policies": str(policies), "rows": rows, "missing": missing,
              "byol_losses": byol_losses}
    write_results(Path(args.out), args.name or args.task, result, "\n".join(md) + "\n")
    print("\n".join(md))
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
