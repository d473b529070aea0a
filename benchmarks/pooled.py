"""Breaking VINN's assumptions on purpose: one pooled database (and one BYOL encoder) over door, push and stack.

The paper keeps one database per task. Pooled, a query can retrieve a frame of another task whose action means
something else there ("same view, different goals": push and stack share the agentview camera, table and
robot). Per task, the per-task VINN that run_<task>.py saved and the pooled VINN are evaluated on the same
held-out seeds; the report adds how often the neighbours came from the wrong task in closed loop, and the
assumption diagnostics of the pooled database.

    python benchmarks/pooled.py        # needs runs/<task>/policies/training0/vinn from run_<task>.py (defaults)
                                       # writes runs/pooled/pooled.{json,md,png}
                                       # (--out benchmarks/results/pooled: the committed one)
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import tyro
from vinn_policy.envs import make_env

from vinn_policy.actions import GRIPPER_INDEX
from vinn_policy.diagnostics import diagnose, verdict_table
from vinn_policy.harness.benchmark import BenchmarkArgs, policy_dir
from vinn_policy.harness.evaluation import evaluate_methods, summarize
from vinn_policy.harness.pipeline import cached_byol, ensure_demos
from vinn_policy.harness.report import success_cell
from vinn_policy.harness.results import environment, markdown_table, write_results
from vinn_policy.policy import VINNPolicy


@dataclass
class Args:
    tasks: tuple[str, ...] = ("door", "push", "stack")
    demos: int = 50
    """Training demos per task (the benchmark default), so each task brings the same data as alone."""
    episodes: int = 30
    """Closed-loop episodes per task and method (the benchmark's first evaluation seeds)."""
    out: str = "runs/pooled"
    """Report folder; --out benchmarks/results/pooled refreshes the committed one."""
    run_dir: str = "runs/pooled"
    workers: int = 2


def main(args: Args) -> dict:
    start = time.perf_counter()
    bench = {t: BenchmarkArgs(task=t, demos=args.demos, episodes=args.episodes) for t in args.tasks}
    data = {t: ensure_demos(t, a.demos + a.val_demos, a.data_dir, image_size=a.image_px) for t, a in bench.items()}
    # Episode ids made unique across tasks: task i's episode e becomes 1000 * i + e.
    offset = {t: 1000 * i for i, t in enumerate(args.tasks)}
    train = {t: d.episode_ids < args.demos for t, d in data.items()}
    frames = np.concatenate([d.frames[train[t]] for t, d in data.items()])
    actions = np.concatenate([d.actions[train[t]] for t, d in data.items()])
    episodes = np.concatenate([d.episode_ids[train[t]] + offset[t] for t, d in data.items()])
    config = bench[args.tasks[0]].byol_config()  # the same CPU-default BYOL as one task, over all tasks' frames
    encoder, info = cached_byol(frames, config, bench[args.tasks[0]].cache_dir)
    results: dict = {"args": asdict(args), "environment": environment(), "byol": asdict(config),
                     "encoder_cached": info["cached"], "tasks": {}}
    md = ["# Pooled database: door + push + stack in one VINN\n",
          f"One BYOL encoder ({config.encoder.arch}, {config.encoder.image_size} px, {config.epochs} epochs) trained on the "
          f"{len(frames)} frames of all {len(args.tasks)} tasks' {args.demos} training demos, and one database of them; "
          "against each task's own encoder and database (run_<task>.py's VINN). Same held-out seeds, "
          f"{args.episodes} episodes per task and method. k per task: the one run_<task>.py chose on that task's validation demos.\n"]
    rows_md, plot = [], {}
    for i, t in enumerate(args.tasks):
        a = bench[t]
        per_task = policy_dir(Path(a.work_dir), 0) / "vinn"
        if not (per_task / "config.json").exists():
            raise SystemExit(f"{per_task} is missing: run benchmarks/run_{t}.py (defaults) first.")
        k = VINNPolicy.load(per_task).config.k
        pooled = VINNPolicy.fit(frames, actions, episodes, encoder=encoder, k=k, gripper_index=GRIPPER_INDEX)
        pooled.calibrate()
        path = pooled.save(Path(args.run_dir) / f"vinn_pooled_for_{t}")
        make = functools.partial(make_env, t, image_size=a.image_px, render_mode=None, horizon=a.horizon)
        rows = evaluate_methods(make, {"vinn": per_task, "vinn_pooled": path}, a.eval_seeds(), args.workers, provenance=True)
        wrong = []  # per pooled step: fraction of neighbour weight on other tasks' frames
        for r in rows:
            prov = r.pop("provenance", None)
            if r["method"] == "vinn_pooled" and prov:
                wrong += [sum(n["weight"] for n in step if n["episode"] // 1000 != i) for step in prov]
        s = summarize(rows)
        diag = diagnose(pooled.database, k, np.asarray([x for r in rows if r["method"] == "vinn_pooled" for x in r["nn_distance"]]))
        results["tasks"][t] = {"k": k, "summary": s, "wrong_task_weight_mean": float(np.mean(wrong)) if wrong else None,
                               "steps_with_wrong_task_majority": float(np.mean(np.asarray(wrong) > 0.5)) if wrong else None,
                               "pooled_diagnostics": diag.to_dict(), "episodes": rows}
        m = s["methods"]
        rows_md.append([t, success_cell(m["vinn"]), success_cell(m["vinn_pooled"]), f"{s['paired']['vinn_pooled']['paired_p']:.3g}",
                        f"{100 * results['tasks'][t]['wrong_task_weight_mean']:.1f}%",
                        f"{100 * results['tasks'][t]['steps_with_wrong_task_majority']:.1f}%"])
        plot[t] = (m["vinn"], m["vinn_pooled"])
        md += [f"\n## {t}: diagnostics of the pooled database (k = {k})\n",
               markdown_table(["assumption", "measured", "verdict"], verdict_table(diag.to_dict()))]
    md.insert(1, markdown_table(["task", "VINN, own database", "VINN, pooled database", "paired p (exact)",
                                 "neighbour weight on other tasks", "steps mostly from other tasks"], rows_md))
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    md.append(f"\nWall time {results['wall_seconds'] / 60:.1f} min (BYOL {'cached' if info['cached'] else 'trained in this run'}).")

    fig, ax = plt.subplots(figsize=(5, 3))
    for j, (label, color) in enumerate([("own database", "C0"), ("pooled database", "C3")]):
        rate = [plot[t][j]["success_rate"] for t in plot]
        err = [[plot[t][j]["success_rate"] - plot[t][j]["wilson_95"][0] for t in plot],
               [plot[t][j]["wilson_95"][1] - plot[t][j]["success_rate"] for t in plot]]
        ax.bar(np.arange(len(plot)) + (j - 0.5) * 0.38, rate, 0.38, yerr=err, capsize=3, color=color, label=label)
    ax.set_xticks(range(len(plot)), list(plot))
    ax.set(ylim=(0, 1.05), ylabel="VINN success (Wilson 95%)", title="per-task vs pooled database")
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    fig.savefig(Path(args.out) / "pooled.png", dpi=110)
    plt.close(fig)
    md.insert(2, "\n![pooled](pooled.png)\n")
    write_results(args.out, "pooled", results, "\n".join(md) + "\n")
    print("\n".join(md))
    return results


if __name__ == "__main__":
    main(tyro.cli(Args))
