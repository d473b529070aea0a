"""Breaking VINN's unimodality assumption on purpose: demonstrations that use two strategies.

Task `push_around`: the cube must be pushed round a block, through a lane on its left or on its right. The
scripted expert goes left on even seeds and right on odd ones. The same number of demonstrations (default 50)
is given to VINN in two ways: one strategy only (all left), or both (half left, half right). Both databases
share one BYOL encoder trained on the two-strategy frames. VINN averages the neighbours of each frame; where
the strategies look alike but act oppositely, the average is a motion neither took. Mode selection (VINNConfig.
mode_selection) is the mitigation measured here. Every method runs on the same held-out seeds. The task's
cube always starts at one pose, so one strategy alone is within VINN's reach at CPU settings.

    python benchmarks/two_strategy.py      # writes runs/two_strategy/two_strategy.{json,md,png}
                                           # (--out benchmarks/results/two_strategy: the committed one)
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
from vinn_policy.harness.benchmark import BenchmarkArgs
from vinn_policy.harness.evaluation import evaluate_methods, summarize
from vinn_policy.harness.offline import translation_mse
from vinn_policy.harness.pipeline import cached_byol, ensure_demos
from vinn_policy.harness.report import NAMES, success_cell
from vinn_policy.harness.results import environment, markdown_table, write_results
from vinn_policy.policy import VINNPolicy

TASK = "push_around"
LABELS = {"vinn_one": "VINN, one strategy (left only)", "vinn": "VINN, two strategies",
          "vinn_dominant": "VINN, two strategies, dominant mode", "vinn_consistent": "VINN, two strategies, consistent mode"}


@dataclass
class Args:
    demos: int = 50
    """Demonstrations in each database (two strategies: half left, half right)."""
    k: int = 10
    episodes: int = 50
    """Closed-loop episodes per method."""
    out: str = "runs/two_strategy"
    """Report folder; --out benchmarks/results/two_strategy refreshes the committed one."""
    run_dir: str = "runs/two_strategy"
    data_dir: str = "data"
    cache_dir: str = "runs/cache"
    workers: int = 2
    smoke: bool = False
    """About a minute (for tests): 32 px, 4 demos, 1 BYOL epoch, 2 short episodes."""

    def __post_init__(self) -> None:
        if self.smoke:
            self.demos, self.k, self.episodes = 4, 3, 2


def main(args: Args) -> dict:
    start = time.perf_counter()
    bench = BenchmarkArgs(task=TASK, demos=args.demos, smoke=args.smoke, data_dir=args.data_dir, cache_dir=args.cache_dir)
    bench.episodes = args.episodes
    data = ensure_demos(TASK, 2 * args.demos + (4 if args.smoke else 10), bench.data_dir, image_size=bench.image_px,
                        progress=not args.smoke)
    left = [e for e, s in enumerate(data.seeds) if s % 2 == 0]
    right = [e for e, s in enumerate(data.seeds) if s % 2 == 1]
    if len(left) < args.demos or len(right) < args.demos // 2:
        raise SystemExit(f"Need {args.demos} left and {args.demos // 2} right demos; the file has {len(left)} and {len(right)}.")
    two = data.select(left[: args.demos // 2] + right[: args.demos - args.demos // 2])
    one = data.select(left[: args.demos])
    encoder, info = cached_byol(two.frames, bench.byol_config(), bench.cache_dir, progress=not args.smoke)

    paths = {}
    for name, demos, mode in [("vinn_one", one, "none"), ("vinn", two, "none"), ("vinn_dominant", two, "dominant"),
                              ("vinn_consistent", two, "consistent")]:
        policy = VINNPolicy.fit(demos.frames, demos.actions, demos.episode_ids, encoder=encoder, k=args.k, gripper_index=GRIPPER_INDEX,
                                mode_selection=mode, frame_indices=demos.frame_indices)
        policy.calibrate()
        paths[name] = policy.save(Path(args.run_dir) / name)
    # Offline: each policy acts frame by frame (in order, so "consistent" sees its previous action) on held-out
    # demos of both strategies that neither database holds.
    held = {"left": left[args.demos:][:5], "right": right[args.demos - args.demos // 2:][:5]}
    offline: dict = {}
    for name, path in paths.items():
        policy, offline[name] = VINNPolicy.load(path), {}
        for side, eps in held.items():
            pred, target = [], []
            for e in eps:
                rows = np.flatnonzero(data.episode_ids == e)
                policy.reset()
                pred += [policy.act(f) for f in data.frames[rows]]
                target.append(data.actions[rows])
            offline[name][side] = translation_mse(np.asarray(pred), np.concatenate(target)) if eps else None
    make = functools.partial(make_env, TASK, image_size=bench.image_px, render_mode=None, horizon=bench.horizon)
    rows = evaluate_methods(make, paths, bench.eval_seeds(), args.workers, progress=not args.smoke)
    summary = summarize(rows)
    diagnostics = {}
    for name in ("vinn_one", "vinn"):
        nn = np.asarray([x for r in rows if r["method"] == name for x in r["nn_distance"]])
        diagnostics[name] = diagnose(VINNPolicy.load(paths[name]).database, args.k, nn).to_dict()

    m = summary["methods"]
    cell = lambda s: f"{s['successes']}/{s['episodes']} = {success_cell(s)}"  # noqa: E731
    mse = lambda x: "–" if x is None else f"{x:.4f}"  # noqa: E731
    table = markdown_table(["method", "success [Wilson 95%]", "paired vs 'VINN, two strategies': only it / only this / paired p (exact)",
                            f"offline MSE, held-out left demos ({len(held['left'])})", f"offline MSE, held-out right demos ({len(held['right'])})"],
                           [[LABELS[n], cell(m[n]), "–" if n == "vinn" else
                             f"{summary['paired'][n]['only_a']} / {summary['paired'][n]['only_b']} / {summary['paired'][n]['paired_p']:.3g}",
                             mse(offline[n]["left"]), mse(offline[n]["right"])] for n in paths])
    md = ["# Two demonstration strategies: VINN's averaging failure and mode selection\n",
          f"`{TASK}`: push the cube round a block, left or right. {args.demos} demonstrations per database; BYOL "
          f"({bench.byol_config().encoder.arch}, {bench.image_px} px, {bench.byol_epochs} epochs) on the two-strategy frames; "
          f"k = {args.k}; {args.episodes} held-out seeds per method (the same for all).\n", table, "\n![two strategies](two_strategy.png)\n",
          "## Diagnostics of the two databases\n"]
    for name in ("vinn_one", "vinn"):
        md += [f"\n{LABELS[name]}:\n", markdown_table(["assumption", "measured", "verdict"], verdict_table(diagnostics[name]))]
    wall = round(time.perf_counter() - start, 1)
    md.append(f"\nWall time {wall / 60:.1f} min (BYOL {'cached' if info['cached'] else 'trained in this run'}).")

    fig, ax = plt.subplots(figsize=(6, 3))
    names = list(paths)
    rate = [m[n]["success_rate"] for n in names]
    err = [[m[n]["success_rate"] - m[n]["wilson_95"][0] for n in names], [m[n]["wilson_95"][1] - m[n]["success_rate"] for n in names]]
    ax.bar(range(len(names)), rate, yerr=err, capsize=4, color=["C2", "C3", "C0", "C0"])
    ax.set_xticks(range(len(names)), [LABELS[n].replace("VINN, ", "").replace(", ", "\n") for n in names], fontsize=8)
    ax.set(ylim=(0, 1.05), ylabel="success (Wilson 95%)", title=f"{TASK}: one vs two strategies")
    fig.tight_layout()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    fig.savefig(Path(args.out) / "two_strategy.png", dpi=110)
    plt.close(fig)
    results = {"args": asdict(args), "environment": environment(), "byol": asdict(bench.byol_config()), "encoder_cached": info["cached"],
               "summary": summary, "offline_translation_mse": offline, "held_out_episodes": held, "diagnostics": diagnostics, "episodes": rows, "wall_seconds": wall,
               "labels": {**NAMES, **LABELS}}
    write_results(args.out, "two_strategy", results, "\n".join(md) + "\n")
    print("\n".join(md))
    return results


if __name__ == "__main__":
    main(tyro.cli(Args))
