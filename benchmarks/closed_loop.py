"""One closed-loop table for all tasks, from the reports run_<task>.py wrote.

    python benchmarks/closed_loop.py      # reads benchmarks/results/<task>/results.json
                                          # writes benchmarks/results/closed_loop.{json,md,png}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import tyro

from vinn_policy.harness.report import NAMES, camera_of, spread_cell, success_cell, trainings_of
from vinn_policy.harness.results import markdown_table, write_results


@dataclass
class Args:
    tasks: tuple[str, ...] = ("door", "push", "stack")
    results: str = "benchmarks/results"
    """Folder holding <task>/results.json; the table is written here too."""


def with_current_names(results: dict) -> dict:
    """Results from before --train-seeds (no "trainings") called the paper's BC "bc": renamed bc_paper, its name now."""
    if "trainings" in results:
        return results
    rename = {"bc": "bc_paper"}
    results["args"]["methods"] = [rename.get(m, m) for m in results["args"]["methods"]]
    results["summary"]["methods"] = {rename.get(m, m): v for m, v in results["summary"]["methods"].items()}
    return results


def task_cell(s: dict) -> str:
    """Success pooled over every training's episodes [Wilson 95%], then the mean ± sd over trainings where there are several."""
    spread = spread_cell(s)
    return success_cell(s) if spread == "–" else f"{success_cell(s)}; per training {spread}"


def trainings_time(results: dict) -> str:
    """The trainings' wall time as each was recorded (a run that reuses recorded trainings takes minutes itself)."""
    seconds = [t.get("run", {}).get("wall_seconds") for t in trainings_of(results)]
    return "–" if None in seconds else f"{sum(seconds) / 60:.0f}"


def main(args: Args) -> dict:
    root = Path(args.results)
    found = {t: with_current_names(json.loads((root / t / "results.json").read_text()))
             for t in args.tasks if (root / t / "results.json").exists()}
    if not found:
        raise SystemExit(f"No results.json under {root}/{{{','.join(args.tasks)}}}; run benchmarks/run_<task>.py first.")
    methods = list(dict.fromkeys(m for r in found.values() for m in (*r["args"]["methods"], *r["summary"]["methods"])))  # run order
    table = markdown_table(["method", *found], [[NAMES.get(m, m), *[task_cell(r["summary"]["methods"][m]) if m in r["summary"]["methods"]
                                                                    else "–" for r in found.values()]] for m in methods])
    runs = markdown_table(["task", "episodes / method", "train demos", "trainings", "VINN k", "encoder",
                           "wall time of the run that wrote it (min; cached stages take ~0)", "of which sweeps (min)",
                           "trainings' own wall time, summed (min)"], [
        [t, r["args"]["episodes"], r["args"]["demos"], len(trainings_of(r)), ", ".join(str(x.get("k")) for x in trainings_of(r)),
         trainings_of(r)[0]["encoder"]["kind"],
         f"{r['wall_seconds'] / 60:.1f}", f"{sum(v for k, v in r['stage_seconds'].items() if 'sweep' in k) / 60:.1f}",
         trainings_time(r)] for t, r in found.items()])
    md = ["# Closed-loop success, all tasks\n",
          "Success rate [Wilson 95%] of each method on the same held-out seeds per task, pooled over every training's episodes; "
          "where a task ran several trainings, then the mean ± sd of the per-training rates and each rate (dots in the plot). Settings: " +
          "; ".join(f"{t}: paper preset" if r["args"]["paper"] else
                    f"{t}: {camera_of(r)} camera, {trainings_of(r)[0]['encoder']['config']['arch']} at "
                    f"{trainings_of(r)[0]['encoder']['config']['image_size']} px, BYOL {r['args']['byol_epochs']} epochs, "
                    f"BC ≤ {r['args']['bc_epochs']} epochs" for t, r in found.items()) +
          ". Per-task details, paired tests, sweeps and timings: " +
          ", ".join(f"[{t}]({t}/report.md)" for t in found) + ".\n", table, "\n![closed loop](closed_loop.png)\n", "## Runs\n", runs]
    for t, r in found.items():
        sweep = r["sweeps"].get("demos")
        if sweep:
            ms = list(next(iter(sweep.values()))["summary"])
            md += [f"\n## {t}: success vs number of demonstrations\n", markdown_table(
                ["demos", *[NAMES.get(m, m) for m in ms]], [[n, *[success_cell(v["summary"][m]) for m in ms]] for n, v in sweep.items()])]

    fig, ax = plt.subplots(figsize=(8, 3.4))
    width = 0.8 / len(methods)
    for i, m in enumerate(methods):
        s = [r["summary"]["methods"].get(m) for r in found.values()]
        x = np.arange(len(found)) + (i - (len(methods) - 1) / 2) * width
        rate = [v["success_rate"] if v else np.nan for v in s]
        err = [[v["success_rate"] - v["wilson_95"][0] if v else 0 for v in s], [v["wilson_95"][1] - v["success_rate"] if v else 0 for v in s]]
        ax.bar(x, rate, width, yerr=err, capsize=2, label=NAMES.get(m, m))
        for xi, v in zip(x, s, strict=True):  # each training's own rate, so a reader sees the spread the pooled bar hides
            per = v.get("per_training", []) if v else []
            if len(per) > 1:
                ax.plot([xi] * len(per), per, "o", ms=2.5, color="black", alpha=0.7, zorder=3)
    ax.set_xticks(range(len(found)), list(found))
    ax.set(ylim=(0, 1.05), ylabel="success (Wilson 95%)")
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.tight_layout()
    fig.savefig(root / "closed_loop.png", dpi=110)
    plt.close(fig)
    data = {t: {"summary": r["summary"]["methods"], "wall_seconds": r["wall_seconds"], "stage_seconds": r["stage_seconds"],
                "k": [x.get("k") for x in trainings_of(r)], "demo_sweep": r["sweeps"].get("demos")} for t, r in found.items()}
    write_results(root, "closed_loop", data, "\n".join(md) + "\n")
    print("\n".join(md))
    return data


if __name__ == "__main__":
    main(tyro.cli(Args))
