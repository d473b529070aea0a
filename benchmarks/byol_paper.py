"""Paper-scale BYOL (ResNet-50, 224 px, batch 168, 100 epochs) on a task's demonstrations — a GPU job.
With --bc, BC end-to-end and BC-rep are trained at the paper's settings too (on the GPU), for the paper's
offline table at the paper's scale.

    python benchmarks/byol_paper.py --demos data/door-v1_84px.hdf5            # on a CUDA machine
    python benchmarks/byol_paper.py --demos data/door-v1_84px.hdf5 --smoke    # tiny, any machine

Reports training throughput and the offline kNN error of the paper-scale encoder on the same episode
split as benchmarks/offline.py (so its VINN row can be compared with the CPU default's), and writes
results to <out>/byol_paper.{json,md}. The encoder itself is saved to --save if given.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, replace

import torch
from vinn_policy.demos.dataset import load_demos

from vinn_policy import BYOLConfig, EncoderConfig, train_byol
from vinn_policy.baselines.bc import BCConfig
from vinn_policy.harness.offline import OfflineConfig, evaluate_offline
from vinn_policy.harness.results import environment, markdown_table, write_results


@dataclass
class Args:
    demos: str = "data/door-v1_84px.hdf5"
    episodes: int = 50
    epochs: int = 100
    device: str | None = None
    """Default: cuda when available. The paper preset on a CPU would take days; say --device cpu to insist."""
    minutes: float | None = None
    """Wall-time budget for training: one epoch is timed, then as many epochs as fit (at most --epochs) run."""
    bc: bool = False
    """Also train BC end-to-end and BC-rep (BCConfig.paper: ResNet-50, Adam 1e-3, batch 64, early stopping)."""
    bc_epochs: int = 100
    save: str | None = None
    out: str = "runs/byol_paper"
    """Report folder; --out benchmarks/results refreshes the committed byol_paper.md."""
    name: str = "byol_paper"
    smoke: bool = False


def main(args: Args) -> dict:
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu" and not args.smoke and args.device is None:
        raise SystemExit("No CUDA device: the paper preset would take days on a CPU. Pass --device cpu to insist, "
                         "or use benchmarks/offline.py for the CPU default.")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    config = BYOLConfig.paper()
    if args.smoke:
        config = BYOLConfig(encoder=EncoderConfig(arch="resnet50", image_size=64), epochs=1, batch_size=8, hidden_dim=64)
        args.episodes = 4
    config.epochs = args.epochs if not args.smoke else 1
    demos = load_demos(args.demos, max_episodes=args.episodes)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as ckpt:
        if args.minutes is not None:  # time one epoch, then resume from its checkpoint for as many as fit
            train_byol(demos.frames, BYOLConfig(**{**asdict(config), "epochs": 1}), checkpoint_dir=ckpt, device=device)
            per_epoch = time.perf_counter() - t
            config.epochs = max(1, min(config.epochs, int(args.minutes * 60 / per_epoch)))
        encoder, losses = train_byol(demos.frames, config, checkpoint_dir=ckpt, device=device)
    seconds = time.perf_counter() - t
    steps = len(demos.frames) // min(config.batch_size, len(demos.frames))
    images = steps * min(config.batch_size, len(demos.frames)) * config.epochs
    if args.save:
        encoder.save(args.save)
    encoder.to(device)
    bc = BCConfig(encoder=config.encoder, epochs=1, batch_size=8) if args.smoke else replace(BCConfig.paper(), epochs=args.bc_epochs)
    offline = evaluate_offline(demos.frames, demos.actions, demos.episode_ids, {"byol": encoder},
                               OfflineConfig(k_max=10 if args.smoke else 50, bc=bc), with_bc=args.bc, progress=False)
    vinn = offline["methods"]["vinn"]
    data = {"args": asdict(args), "device": torch.cuda.get_device_name() if device == "cuda" else device,
            "environment": environment(), "config": asdict(config), "frames": len(demos.frames), "train_seconds": seconds,
            "images_per_s": images / seconds, "losses": losses, "offline": offline}
    cut = f" (cut from {args.epochs} to fit a {args.minutes}-minute budget)" if args.minutes and config.epochs < args.epochs else ""
    md = (f"# Paper-scale BYOL ({config.encoder.arch}, {config.encoder.image_size} px, batch {config.batch_size}, "
          f"{config.epochs} epochs{cut}) on {args.demos}\n\nDevice: {data['device']}. {len(demos.frames)} frames from "
          f"{demos.num_episodes} demos.\n\n" +
          markdown_table(["train time (s)", "images/s", "first / last epoch loss", "VINN offline MSE (test)", "k (val)", "gripper acc"],
                         [[f"{seconds:.0f}", f"{images / seconds:.0f}", f"{losses[0]:.3f} / {losses[-1]:.3f}", f"{vinn['mse']:.4f}",
                           vinn["k"], f"{vinn['gripper_accuracy']:.0%}"]]))
    if args.bc:
        md += (f"\n\nOffline, the same test episodes (BC end-to-end and BC-rep: {bc.encoder.arch} at {bc.encoder.image_size} px, "
               f"batch {bc.batch_size} for both (the paper's BC-rep used 256), at most {bc.epochs} epochs, patience {bc.patience}):\n\n" +
               markdown_table(["method", "translation MSE (test)", "gripper acc", "train (s)", "best epoch"],
                              [[name, f"{m['mse']:.4f}", f"{m['gripper_accuracy']:.0%}",
                                f"{m['train_seconds']:.0f}" if "train_seconds" in m else "–", m.get("best_epoch", "–")]
                               for name, m in offline["methods"].items()]))
    write_results(args.out, args.name, data, md)
    print(md)
    return data


if __name__ == "__main__":
    import tyro  # here, so the GPU machine can import main without it

    main(tyro.cli(Args))
