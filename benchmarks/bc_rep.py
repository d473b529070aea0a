"""Why BC-rep trailed kNN on the same frozen features: feature scaling against training length, offline.

    python benchmarks/bc_rep.py                                   # door, push, stack; writes runs/bc_rep.{json,md}
    python benchmarks/bc_rep.py --out benchmarks/results          # the committed copy

On each task's benchmark split (the first 50 demos train, the next 10 validate) and its cached training-0 BYOL
encoder (the one run_<task>.py trains), BC-rep's head is trained four ways: raw or standardised features, for the
6 epochs BC had before issue 22 or until its validation loss stops improving. The metric is the benchmark's
offline error on the validation demos (translation MSE), next to VINN's over the same features with k chosen
there. Everything is offline: no evaluation episodes are used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import tyro

from vinn_policy.baselines.bc import BCPolicy
from vinn_policy.harness.args import BenchmarkArgs
from vinn_policy.harness.pipeline import ensure_demos
from vinn_policy.harness.results import environment, markdown_table, write_results
from vinn_policy.harness.training import build_encoder, fit_vinn, offline_errors

VARIANTS = {"raw, 6 epochs": (False, 6), "raw, to convergence": (False, None),
            "standardised, 6 epochs": (True, 6), "standardised, to convergence": (True, None)}
"""name -> (standardize, epoch cap; None: the benchmark's cap, so early stopping ends training)."""


@dataclass
class Args:
    tasks: tuple[str, ...] = ("door", "push", "stack")
    out: str = "runs"
    """Writes bc_rep.{json,md} here."""
    run_dir: str = "runs/bc_rep"
    """The fitted policies (not committed)."""
    data_dir: str = "data"
    cache_dir: str = "runs/cache"
    smoke: bool = False


def check_task(task: str, args: Args) -> dict:
    bench = BenchmarkArgs(task=task, smoke=args.smoke, data_dir=args.data_dir, cache_dir=args.cache_dir)
    work = Path(args.run_dir)
    data = ensure_demos(task, bench.demos + bench.val_demos, bench.data_dir, image_size=bench.image_px, camera=bench.camera)
    train = np.flatnonzero(data.episode_ids < bench.demos)
    val = np.flatnonzero(data.episode_ids >= data.num_episodes - bench.val_demos)
    encoder, info = build_encoder(bench, data.frames[train])
    embeddings = encoder.embed(data.frames)  # once: VINN's k and database and every BC-rep head share them
    vinn, chosen = fit_vinn(encoder, embeddings, data, train, val)
    paths = {"vinn": str(vinn.save(work / task / "vinn"))}
    rows = np.concatenate([train, val])
    epochs = {}
    for name, (standardize, cap) in VARIANTS.items():
        config = replace(bench.bc_config("bc_rep"), standardize=standardize, **({"epochs": cap} if cap else {}))
        policy = BCPolicy.fit_on_features(data.frames[rows], data.actions[rows], data.episode_ids[rows], encoder, config,
                                          val_episodes=np.unique(data.episode_ids[val]), progress=False, features=embeddings[rows])
        paths[name] = str(policy.save(work / task / name.replace(", ", "_").replace(" ", "_")))
        epochs[name] = {"epochs": len(policy.report.val_loss), "best_epoch": policy.report.best_epoch, "converged": policy.report.converged(policy.config.patience)}
    errors = offline_errors(paths, data, val)
    return {"encoder_cached": info["cached"], "k": chosen["k"], "mse": {name: e["mse"] for name, e in errors.items()}, "epochs": epochs}


def main(args: Args) -> dict:
    results = {t: check_task(t, args) for t in args.tasks}
    rows = [[t, f"{r['mse']['vinn']:.4f} (k {r['k']})",
             *[f"{r['mse'][v]:.4f} ({r['epochs'][v]['epochs']} ep{'' if r['epochs'][v]['converged'] else ', cap'})" for v in VARIANTS]]
            for t, r in results.items()]
    md = ["# BC-rep against VINN on the same frozen features (offline)\n",
          "Translation MSE on each task's validation demos (lower is better); BC-rep's head trained on the benchmark's "
          "training demos with the CPU-default BYOL encoder of training 0, its epochs in brackets ('cap': stopped by the "
          "epoch cap, not converged). Command: `python benchmarks/bc_rep.py --out benchmarks/results`.\n",
          markdown_table(["task", "VINN", *[f"BC-rep, {v}" for v in VARIANTS]], rows)]
    write_results(args.out, "bc_rep", {"args": asdict(args), "environment": environment(), "tasks": results}, "\n".join(md) + "\n")
    print("\n".join(md))
    return results


if __name__ == "__main__":
    main(tyro.cli(Args))
