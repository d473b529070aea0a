"""The benchmark report: results.json, report.md and PNG plots in one directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from vinn_policy.artefact import atomic_write_text
from vinn_policy.diagnostics import verdict_table
from vinn_policy.harness.results import markdown_table

NAMES = {"vinn": "VINN", "vinn_random": "kNN, untrained encoder", "bc": "BC end-to-end", "bc_rep": "BC-rep",
         "open_loop": "Open-loop", "random": "Random",
         "vinn_dominant": "VINN, dominant mode", "vinn_consistent": "VINN, consistent mode"}


def camera_of(results: dict) -> str:
    """The camera a run's policies saw (runs from before --camera existed used the task's own)."""
    from vinn_policy.envs import resolve_camera

    return resolve_camera(results["args"]["task"], results["args"].get("camera"))


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def success_cell(s: dict[str, Any]) -> str:
    """A method's summary as 'rate [Wilson 95% low, high]' for a table cell."""
    lo, hi = s["wilson_95"]
    return f"{100 * s['success_rate']:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}]"


def success_table(summary: dict[str, Any], offline: dict[str, Any], latency: dict[str, float], train_s: dict[str, float]) -> str:
    rows = []
    for m, s in summary["methods"].items():
        lo, hi = s["wilson_95"]
        off = offline.get(m, {})
        rows.append([NAMES.get(m, m), f"{s['successes']}/{s['episodes']} = {_pct(s['success_rate'])}", f"[{_pct(lo)}, {_pct(hi)}]",
                     f"{s['mean_steps_success']:.0f}" if s["mean_steps_success"] else "–",
                     f"{off['mse']:.4f}" if off else "–", _pct(off["gripper_accuracy"]) if off else "–",
                     f"{latency.get(m, float('nan')):.1f}", f"{train_s.get(m, 0):.0f}"])
    return markdown_table(["method", "closed-loop success", "Wilson 95%", "steps (successes)", "offline MSE (val)",
                           "gripper acc (val)", "act() ms", "fit (s)"], rows)


def paired_table(summary: dict[str, Any]) -> str:
    """VINN against each baseline on the same seeds: exact McNemar p, Holm-corrected over the baselines."""
    words = {"reference better": "VINN better", "baseline better": "baseline better"}
    rows = [[NAMES.get(m, m), p["both"], p["only_a"], p["only_b"], p["neither"], f"{p['mcnemar_p']:.3g}",
             f"{p['holm_p']:.3g}" if "holm_p" in p else "–", words.get(p.get("verdict"), p.get("verdict", "–"))]
            for m, p in summary["paired"].items()]
    return markdown_table(["VINN vs", "both succeed", "only VINN", "only baseline", "neither", "McNemar p (exact)",
                           "Holm p", "at 5% after Holm"], rows)


def plot_success(summary: dict[str, Any], path: Path, title: str) -> None:
    methods = list(summary["methods"])
    rates = [summary["methods"][m]["success_rate"] for m in methods]
    lo = [r - summary["methods"][m]["wilson_95"][0] for m, r in zip(methods, rates, strict=True)]
    hi = [summary["methods"][m]["wilson_95"][1] - r for m, r in zip(methods, rates, strict=True)]
    fig, ax = plt.subplots(figsize=(1.3 * len(methods) + 2, 3.2))
    ax.bar(range(len(methods)), rates, yerr=[lo, hi], capsize=4, color=["C0" if m == "vinn" else "C7" for m in methods])
    ax.set_xticks(range(len(methods)), [NAMES.get(m, m) for m in methods], rotation=20, ha="right", fontsize=8)
    ax.set(ylim=(0, 1.05), ylabel="success (Wilson 95%)", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_k(results: dict[str, Any], path: Path) -> None:
    curve = results.get("k_curve_val")
    if not curve:
        return
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(curve["k"], curve["mse"], label="offline MSE (validation)")
    ax.axvline(results["k"], color="grey", ls=":", label=f"k = {results['k']}")
    ax.set(xlabel="k", ylabel="translation MSE")
    sweep = results["sweeps"].get("k")
    if sweep:
        ax2 = ax.twinx()
        ks = [int(k) for k in sweep]
        ax2.errorbar(ks, [sweep[str(k)]["success_rate"] for k in ks], fmt="o-", color="C1",
                     yerr=[[sweep[str(k)]["success_rate"] - sweep[str(k)]["wilson_95"][0] for k in ks],
                           [sweep[str(k)]["wilson_95"][1] - sweep[str(k)]["success_rate"] for k in ks]], label="closed-loop success")
        ax2.set(ylabel="VINN success", ylim=(0, 1.05))
    ax.legend(fontsize=7, loc="upper center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_demos(results: dict[str, Any], path: Path) -> None:
    sweep = results["sweeps"].get("demos")
    if not sweep:
        return
    counts = [int(n) for n in sweep]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for m in sweep[str(counts[0])]["summary"]:
        rates = [sweep[str(n)]["summary"][m]["success_rate"] for n in counts]
        err = [[r - sweep[str(n)]["summary"][m]["wilson_95"][0] for r, n in zip(rates, counts, strict=True)],
               [sweep[str(n)]["summary"][m]["wilson_95"][1] - r for r, n in zip(rates, counts, strict=True)]]
        ax.errorbar(counts, rates, yerr=err, fmt="o-", capsize=3, label=NAMES.get(m, m))
    ax.set(xlabel="training demonstrations", ylabel="success (Wilson 95%)", ylim=(0, 1.05))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def uncertainty_table(summary: dict[str, Any]) -> str:
    rows = []
    for m, s in summary["methods"].items():
        for key, a in s.get("failure_auroc", {}).items():
            rows.append([NAMES.get(m, m), key.replace("uncertainty_", "") + " over the episode",
                         f"{a['auroc']:.2f}" if a["auroc"] is not None else "n/a (needs successes and failures)",
                         a["failures"], a["successes"]])
    return markdown_table(["method", "episode score", "AUROC for failure", "failures", "successes"], rows)


def plot_uncertainty(results: dict[str, Any], path: Path, method: str = "vinn") -> None:
    """VINN's per-step uncertainty over time in a successful and a failed episode (where both exist)."""
    rows = [r for r in results["episodes"] if r["method"] == method and r.get("uncertainty")]
    picks = [next((r for r in rows if r["success"] is ok), None) for ok in (True, False)]
    if not any(picks):
        return
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for r, colour in zip(picks, ("C2", "C3"), strict=True):
        if r is not None:
            ax.plot(r["uncertainty"], color=colour, label=f"seed {r['seed']}: {'success' if r['success'] else 'failure'}")
    ax.axhline(2.0, color="grey", ls=":", label="typical in-distribution (= 2)")
    ax.set(xlabel="step", ylabel="uncertainty (distance + spread)", title=f"{NAMES.get(method, method)} uncertainty")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def host_note(environment: dict[str, Any]) -> str:
    """The machine's measured speed, which the wall times depend on (absent from results made before it was recorded)."""
    speed = environment.get("host_speed")
    if not speed:
        return ""
    return (f" on a host with {speed['read_bandwidth_gb_per_s']:.1f} GB/s memory reads and a "
            f"{speed['resnet18_84px_forward_ms']:.1f} ms one-thread ResNet-18 forward pass (84 px)")


def in_run_order(results: dict[str, Any]) -> dict[str, Any]:
    """The summary with methods in the order they were run (a results.json written with sorted keys has lost it)."""
    summary = results["summary"]
    return {**summary, **{key: {m: summary[key][m] for m in run_ordered(summary[key], results["args"]["methods"])}
                          for key in ("methods", "paired")}}


def run_ordered(names: object, methods: list[str]) -> list[str]:
    """`names` in the order `methods` were run; names not among them last, in their own order."""
    rank = {m: i for i, m in enumerate(methods)}
    return sorted(names, key=lambda m: rank.get(m, len(rank)))


def header_section(results: dict[str, Any]) -> list[str]:
    args = results["args"]
    return [f"# Closed-loop benchmark: {args['task']}\n",
            f"{results['environment']['date']} · {args['demos']} training demos (+{results['demos']['val']} validation) · "
            f"{args['episodes']} evaluation episodes per method on the same held-out seeds ({results.get('block', 'block not recorded')} block) · VINN k = {results['k']} "
            f"({'fixed' if args['k'] else 'chosen on validation'}) · encoder: {results['encoder']['kind']} "
            f"{results['encoder']['config']['arch']} at {results['encoder']['config']['image_size']} px"
            f"{' (cached)' if results['encoder'].get('cached') else ''} · camera: {camera_of(results)} · total wall time "
            f"{results['wall_seconds'] / 60:.1f} min{host_note(results['environment'])}\n"]


def success_sections(results: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    md = ["## Success\n", success_table(summary, results["offline"], results["act_latency_ms"], results["train_seconds"]),
          "\n![success](success.png)\n"]
    if summary["paired"]:
        md += ["## Paired per-seed comparison\n", paired_table(summary)]
    return md


def uncertainty_section(summary: dict[str, Any]) -> list[str]:
    if not any("failure_auroc" in s for s in summary["methods"].values()):
        return []
    return ["\n## Does VINN know when it will fail?\n",
            "Per step, VINN's uncertainty is the neighbours' weighted distance plus their action spread, each divided by "
            "its median over the demonstrations (leave one episode out), so ~2 is typical in distribution. An episode's "
            "score is its maximum or mean; AUROC is how well that score separates failed from successful episodes. "
            "Failures run to the horizon and successes stop early, so a failure's maximum is taken over more steps; "
            "the mean is not lengthened that way.\n",
            uncertainty_table(summary), "\n![uncertainty](uncertainty.png)\n"]


def diagnostics_section(results: dict[str, Any]) -> list[str]:
    if not results.get("diagnostics"):
        return []
    return ["\n## Do VINN's assumptions hold here?\n",
            "Measured on the VINN database (held-out frames: leave one episode out) and its closed-loop steps; "
            "see `vinn_policy.diagnostics` for definitions and thresholds.\n",
            markdown_table(["assumption", "measured", "verdict"], verdict_table(results["diagnostics"]))]


def sweep_sections(results: dict[str, Any]) -> list[str]:
    args, md = results["args"], []
    if results["sweeps"].get("k"):
        md += ["\n## VINN success vs k\n", markdown_table(["k", "success", "Wilson 95%"], [
            [k, _pct(s["success_rate"]), f"[{_pct(s['wilson_95'][0])}, {_pct(s['wilson_95'][1])}]"] for k, s in results["sweeps"]["k"].items()])]
    if results["sweeps"].get("demos"):
        sweep = results["sweeps"]["demos"]
        methods = run_ordered(next(iter(sweep.values()))["summary"], args["methods"])
        md += ["\n## Success vs number of demonstrations\n",
               f"VINN with n demos is the main database without its later episodes: its encoder (BYOL, self-supervised on all "
               f"{args['demos']} demos' frames) and k are the main run's, and BC-rep keeps that encoder too. BC end-to-end and "
               "BC-rep's head are trained on the n demos alone.\n", markdown_table(["demos", *[NAMES.get(m, m) for m in methods]], [
            [n, *[f"{_pct(v['summary'][m]['success_rate'])} [{_pct(v['summary'][m]['wilson_95'][0])}, "
                  f"{_pct(v['summary'][m]['wilson_95'][1])}]" for m in methods]] for n, v in sweep.items()]),
               "\n![demos](demos.png)\n"]
    if results.get("k_curve_val"):
        md += ["\n![k](k.png)\n"]
    return md


def time_and_videos_section(results: dict[str, Any]) -> list[str]:
    md = ["\n## Time\n", markdown_table(["stage", "seconds"], [[k, v] for k, v in results["stage_seconds"].items()])]
    if results["videos"]:
        md += ["\nVideos (not committed): " + ", ".join(f"`{v['file']}`" for v in results["videos"]) +
               (" — each reproduces its evaluation episode." if all(v["reproduces_evaluation"] for v in results["videos"])
                else " — WARNING: some did not reproduce their evaluation episode.")]
    return md


def report_markdown(results: dict[str, Any]) -> str:
    """report.md of one run, section by section."""
    summary = in_run_order(results)
    return "\n".join([*header_section(results), *success_sections(results, summary), *uncertainty_section(summary),
                      *diagnostics_section(results), *sweep_sections(results), *time_and_videos_section(results)]) + "\n"


def write_report(out: str | Path, results: dict[str, Any]) -> None:
    """results.json, report.md and the plots of one run, in `out`."""
    out = Path(out)
    args = results["args"]
    atomic_write_text(out / "results.json", json.dumps(results, indent=2))  # key order = run order
    atomic_write_text(out / "report.md", report_markdown(results))
    plot_success(in_run_order(results), out / "success.png", f"{args['task']}: {args['episodes']} episodes per method")
    plot_k(results, out / "k.png")
    plot_demos(results, out / "demos.png")
    plot_uncertainty(results, out / "uncertainty.png")
