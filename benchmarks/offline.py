"""The paper's offline table: held-out action error of VINN and the baselines on door, push and stack.

    python benchmarks/offline.py                  # CPU defaults; writes runs/offline/offline.{json,md,png}
    python benchmarks/offline.py --out benchmarks/results   # refreshes the committed table
    python benchmarks/offline.py --smoke          # a minute, for tests
    python benchmarks/offline.py --imagenet-weights ~/resnet18-f37072fd.pth   # adds the ImageNet kNN row
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
import tyro

from vinn_policy import BYOLConfig, Encoder, EncoderConfig
from vinn_policy.baselines.bc import BCConfig
from vinn_policy.harness.offline import OfflineConfig, evaluate_offline
from vinn_policy.harness.pipeline import cached_byol, ensure_demos
from vinn_policy.harness.results import environment, markdown_table, write_results

METHOD_NAMES = {"vinn": "VINN (BYOL kNN)", "vinn_random": "kNN, random-init encoder", "vinn_imagenet": "kNN, ImageNet encoder",
                "bc": "BC end-to-end", "bc_rep": "BC-rep (frozen BYOL)", "open_loop": "Open-loop", "random": "Random"}


@dataclass
class Args:
    tasks: tuple[str, ...] = ("door", "push", "stack")
    demos: int = 50
    """Demonstrations per task (split by episode into train / validation / test)."""
    byol_epochs: int = BYOLConfig().epochs
    bc_epochs: int = BCConfig().epochs
    image_size: int = 84
    imagenet_weights: str | None = None
    """Local torchvision ResNet-18 ImageNet file; adds the ImageNet kNN row (never downloaded)."""
    data_dir: str = "data"
    cache_dir: str = "runs/cache"
    out: str = "runs/offline"
    """Report folder; --out benchmarks/results refreshes the committed offline.md."""
    name: str = "offline"
    smoke: bool = False


def main(args: Args) -> dict:
    if args.smoke:
        args.demos, args.byol_epochs, args.bc_epochs, args.image_size = 6, 1, 1, 32
    enc_cfg = EncoderConfig(image_size=args.image_size)
    byol_cfg = BYOLConfig(encoder=enc_cfg, epochs=args.byol_epochs, **({"batch_size": 16, "hidden_dim": 128} if args.smoke else {}))
    config = OfflineConfig(bc=BCConfig(encoder=enc_cfg, epochs=args.bc_epochs), k_max=10 if args.smoke else 50)
    results = {}
    for task in args.tasks:
        t0 = time.perf_counter()
        demos = ensure_demos(task, args.demos, args.data_dir, image_size=args.image_size)
        t_demos = time.perf_counter() - t0
        byol, byol_info = cached_byol(demos.frames, byol_cfg, args.cache_dir)
        t_byol = time.perf_counter() - t0 - t_demos
        torch.manual_seed(0)
        encoders = {"byol": byol, "random": Encoder(enc_cfg)}
        if args.imagenet_weights:
            encoders["imagenet"] = Encoder.imagenet(args.imagenet_weights, enc_cfg)
        result = evaluate_offline(demos.frames, demos.actions, demos.episode_ids, encoders, config)
        result["timings"] = {"demos_s": t_demos, "byol_s": t_byol, "byol_cached": byol_info["cached"],
                             "total_s": time.perf_counter() - t0}
        result["byol_losses"] = byol_info["losses"]
        results[task] = result
        print(task, {m: round(r["mse"], 4) for m, r in result["methods"].items()}, flush=True)

    data = {"args": asdict(args), "environment": environment(), "byol_config": asdict(byol_cfg), "tasks": results}
    methods = [m for m in METHOD_NAMES if any(m in r["methods"] for r in results.values())]

    def cell(task: str, m: str) -> str:
        r = results[task]["methods"].get(m)
        if r is None:
            return "–"
        extra = f", k={r['k']}" if "k" in r else ""
        grip = f" · grip {r['gripper_accuracy']:.0%}" if r.get("gripper_accuracy") is not None else ""
        return f"{r['mse']:.4f}{grip}{extra}"

    table = markdown_table(["method", *args.tasks], [[METHOD_NAMES[m], *(cell(t, m) for t in args.tasks)] for m in methods])
    split = {t: r["split"]["episodes"] for t, r in results.items()}
    timing = markdown_table(["task", "demos (s)", "BYOL (s)", "BC end-to-end train (s)", "BC-rep train (s)", "BC best epoch"],
                            [[t, f"{r['timings']['demos_s']:.0f}",
                              f"{r['timings']['byol_s']:.0f}" + (" (cached)" if r["timings"]["byol_cached"] else ""),
                              f"{r['methods']['bc']['train_seconds']:.0f}", f"{r['methods']['bc_rep']['train_seconds']:.0f}",
                              f"{r['methods']['bc']['best_epoch']} / {r['methods']['bc_rep']['best_epoch']}"]
                             for t, r in results.items()])
    md = (f"# Offline action error on held-out demonstrations ({data['environment']['date']})\n\n"
          "Translation MSE (mean over dx, dy, dz of the squared error in action units, averaged over test frames; "
          "lower is better) · gripper accuracy · VINN's k chosen on the validation split. "
          f"{args.demos} scripted demos per task at {args.image_size} px, split by episode {split}. "
          f"BYOL: {enc_cfg.arch}, {byol_cfg.epochs} epochs, batch {byol_cfg.batch_size}; BC: {args.bc_epochs} epochs max, "
          "early stopping on validation loss.\n\n" + table + "\n## Training time on this machine\n\n" + timing +
          "\n![k curves](offline.png)\n")
    fig, axes = plt.subplots(1, len(args.tasks), figsize=(4.5 * len(args.tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], args.tasks, strict=True):
        for name, curve in results[task]["k_curves"].items():
            ax.plot(curve["test"]["k"], curve["test"]["mse"], label=f"{name} (test)")
            ax.plot(curve["val"]["k"], curve["val"]["mse"], "--", label=f"{name} (val)")
        for m in ("bc", "bc_rep", "open_loop"):
            ax.axhline(results[task]["methods"][m]["mse"], color="grey", lw=0.8, ls=":")
            ax.text(1, results[task]["methods"][m]["mse"], m, fontsize=7, va="bottom")
        ax.set(title=task, xlabel="k", ylabel="translation MSE")
        ax.legend(fontsize=7)
    fig.tight_layout()
    write_results(args.out, args.name, data, md)
    fig.savefig(f"{args.out}/{args.name}.png", dpi=110)
    print(md)
    return data


if __name__ == "__main__":
    main(tyro.cli(Args))
