"""The benchmark report: results.json, report.md and PNG plots in one directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from vinn_policy.artefact import atomic_write_text
from vinn_policy.baselines.bc import PLATEAU_TOLERANCE
from vinn_policy.diagnostics import verdict_table
from vinn_policy.harness.results import markdown_table

NAMES = {"vinn": "VINN", "vinn_random": "kNN, untrained encoder", "bc": "BC (robomimic)", "bc_paper": "BC (paper)", "bc_rep": "BC-rep",
         "open_loop": "Open-loop", "random": "Random",
         "vinn_dominant": "VINN, dominant mode", "vinn_consistent": "VINN, consistent mode", "vinn_chunk": "VINN, chunked",
         "vinn_multiview": "VINN, multi-view", "vinn_proprio": "VINN + proprioception", "vinn_plus": "VINN, chunked multi-view",
         "vinn_bc_encoder": "kNN on BC's features"}


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


def trainings_of(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each training's record (k, offline errors, fit times, policies, BC curves); a results.json from before
    --train-seeds held its one training at the top level."""
    return results.get("trainings") or [results]


def over_trainings(results: dict[str, Any], key: str, method: str, field: str | None = None) -> float | None:
    """The mean over trainings of trainings[i][key][method] (or its [field]), None where no training has it."""
    values = [t[key][method] if field is None else t[key][method][field] for t in trainings_of(results) if method in t.get(key, {})]
    return float(sum(values) / len(values)) if values else None


def spread_cell(s: dict[str, Any]) -> str:
    """'mean ± sd (a, b, c)' over trainings, or '–' for a method trained once."""
    if len(s.get("per_training", [])) < 2:
        return "–"
    return f"{_pct(s['mean'])} ± {100 * s['std']:.0f} ({', '.join(_pct(r) for r in s['per_training'])})"


def success_table(results: dict[str, Any], summary: dict[str, Any]) -> str:
    rows = []
    for m, s in summary["methods"].items():
        lo, hi = s["wilson_95"]
        mse, grip, fit = (over_trainings(results, "offline", m, "mse"), over_trainings(results, "offline", m, "gripper_accuracy"),
                          over_trainings(results, "train_seconds", m))
        rows.append([NAMES.get(m, m), f"{s['successes']}/{s['episodes']} = {_pct(s['success_rate'])}", f"[{_pct(lo)}, {_pct(hi)}]",
                     spread_cell(s), f"{s['mean_steps_success']:.0f}" if s["mean_steps_success"] else "–",
                     f"{mse:.4f}" if mse is not None else "–", _pct(grip) if grip is not None else "–",
                     f"{results['act_latency_ms'].get(m, float('nan')):.1f}", f"{fit or 0:.0f}"])
    return markdown_table(["method", "closed-loop success (all trainings)", "Wilson 95%", "per training: mean ± sd (each)",
                           "steps (successes)", "offline MSE (val)", "gripper acc (val)", "act() ms per step (1 thread)", "fit (s)"], rows)


def convergence_cell(r: dict[str, Any]) -> str:
    if r["stopped_early"]:
        return "yes"
    return (f"yes: on a plateau at the cap (< {100 * PLATEAU_TOLERANCE:.0f}% lower over its last {r['patience']} epochs)"
            if r["converged"] else "**no: still improving at the cap**")


def bc_training_table(results: dict[str, Any]) -> str:
    """Each BC training: epochs run against the cap, the best epoch and its validation loss, and whether it converged."""
    rows = [[NAMES.get(m, m), i, f"{len(r['val_loss'])} / {r.get('cap', results['args']['bc_epochs'])}", r.get("patience", "–"), r["best_epoch"], f"{min(r['val_loss']):.4f}", f"{r['train_loss'][-1]:.4f}",
             f"{r['lr'][-1]:.1e}" if r.get("lr") else "–", convergence_cell(r), f"{r['seconds']:.0f}"]
            for i, t in enumerate(trainings_of(results)) for m, r in t.get("bc_training", {}).items()]
    return markdown_table(["method", "training", "epochs run / cap", "patience", "best epoch", "best val loss", "last train loss", "last lr",
                           "converged", "seconds"], rows)


def plot_bc_training(results: dict[str, Any], path: Path) -> None:
    """Train (dashed) and validation (solid) loss per epoch of every BC training, one panel per method."""
    methods = list(dict.fromkeys(m for t in trainings_of(results) for m in t.get("bc_training", {})))
    if not methods:
        return
    fig, axes = plt.subplots(1, len(methods), figsize=(4 * len(methods), 3.2), squeeze=False)
    for ax, m in zip(axes[0], methods, strict=True):
        for i, t in enumerate(trainings_of(results)):
            r = t.get("bc_training", {}).get(m)
            if r:
                epochs = range(1, len(r["val_loss"]) + 1)
                ax.plot(epochs, r["val_loss"], color=f"C{i}", label=f"training {i} val")
                ax.plot(epochs, r["train_loss"], color=f"C{i}", ls="--", alpha=0.6)
                ax.axvline(r["best_epoch"], color=f"C{i}", ls=":", alpha=0.5)
        ax.set(title=NAMES.get(m, m), xlabel="epoch", ylabel="loss (dashed: train)", yscale="log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def paired_table(paired: dict[str, Any], reference: str = "vinn") -> str:
    """`reference` against each baseline on the same seeds: the exact paired test over seeds, Holm-corrected."""
    name = NAMES.get(reference, reference)
    words = {"reference better": f"{name} better", "baseline better": "baseline better"}
    rows = [[NAMES.get(m, m), p["both"], p["only_a"], p["only_b"], p["neither"], f"{p['paired_p']:.3g}",
             f"{p['holm_p']:.3g}" if "holm_p" in p else "–", words.get(p.get("verdict"), p.get("verdict", "–"))]
            for m, p in paired.items()]
    return markdown_table([f"{name} vs", "both succeed", f"only {name}", "only baseline", "neither", "paired p (exact)",
                           "Holm p", "at 5% after Holm"], rows)


def plot_success(summary: dict[str, Any], path: Path, title: str) -> None:
    methods = list(summary["methods"])
    rates = [summary["methods"][m]["success_rate"] for m in methods]
    lo = [r - summary["methods"][m]["wilson_95"][0] for m, r in zip(methods, rates, strict=True)]
    hi = [summary["methods"][m]["wilson_95"][1] - r for m, r in zip(methods, rates, strict=True)]
    fig, ax = plt.subplots(figsize=(1.3 * len(methods) + 2, 3.2))
    ax.bar(range(len(methods)), rates, yerr=[lo, hi], capsize=4, color=["C0" if m == "vinn" else "C7" for m in methods])
    for i, m in enumerate(methods):  # each training's success, where there are several
        per = summary["methods"][m].get("per_training", [])
        if len(per) > 1:
            ax.plot([i] * len(per), per, "k.", ms=5, label="one training")
    if any(len(summary["methods"][m].get("per_training", [])) > 1 for m in methods):
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles[:1], labels[:1], fontsize=7)
    ax.set_xticks(range(len(methods)), [NAMES.get(m, m) for m in methods], rotation=20, ha="right", fontsize=8)
    ax.set(ylim=(0, 1.05), ylabel="success (Wilson 95%)", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_k(results: dict[str, Any], path: Path) -> None:
    first = trainings_of(results)[0]
    curve = first.get("k_curve_val")
    if not curve:
        return
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(curve["k"], curve["mse"], label="offline MSE (validation, training 0)")
    ax.axvline(first["k"], color="grey", ls=":", label=f"k = {first['k']}")
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
    args, trainings = results["args"], trainings_of(results)
    encoder = trainings[0]["encoder"]
    cached = sum(bool(t["encoder"].get("cached")) for t in trainings)
    return [f"# Closed-loop benchmark: {args['task']}\n",
            f"{results['environment']['date']} · {args['demos']} training demos (+{results['demos']['val']} validation) · "
            f"{args['episodes']} evaluation episodes per method on the same held-out seeds ({results.get('block', 'block not recorded')} block) · "
            f"{len(trainings)} training(s) of every learned method (seeds 0–{len(trainings) - 1}) · VINN k = "
            f"{', '.join(str(t.get('k')) for t in trainings)} ({'fixed' if args['k'] else 'chosen on validation'}) · encoder: {encoder['kind']} "
            f"{encoder['config']['arch']} at {encoder['config']['image_size']} px"
            f"{f' ({cached} of {len(trainings)} cached)' if cached else ''} · camera: {camera_of(results)} · total wall time "
            f"{results['wall_seconds'] / 60:.1f} min{host_note(results['environment'])}\n"] + reused_note(trainings)


def reused_note(trainings: list[dict[str, Any]]) -> list[str]:
    """Which trainings an earlier run recorded (report folder's trainings/), by which commit and in how long."""
    runs = [t.get("run") or {} for t in trainings]
    if not any(r.get("reused") for r in runs):
        return []
    parts = [f"training {i} recorded {r['date']} by commit {r['commit']} in {r['wall_seconds'] / 60:.0f} min"
             f"{host_note(r.get('environment') or {})}" if r.get("reused") else f"training {i} run now" for i, r in enumerate(runs)]
    return [f"Trainings reused from this folder's `trainings/` records (same arguments, demonstrations and code): "
            f"{'; '.join(parts)}. The wall time above is this run's; act() latency, diagnostics and videos are training 0's, "
            "measured on its host.\n"]


def success_sections(results: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    n = len(trainings_of(results))
    md = ["## Success\n", (f"Each learned method was trained {n} times (seeds 0–{n - 1}) and every training evaluated on the same "
                           "episodes; open-loop and random train nothing and were evaluated once. The spread over trainings includes the "
                           "episodes' own sampling noise (a binomial sd of up to 7 points at 50 episodes), not only the trainings'. "
                           if n > 1 else "") +
          "Offline errors and fit times are means over trainings.\n", success_table(results, summary), "\n![success](success.png)\n"]
    if summary["paired"]:
        md += ["## Paired per-episode comparison\n", ("Episodes of all trainings are pooled, each paired with the same training's "
               "episode on the same seed (open-loop and random, which are deterministic: their one evaluation of that seed). "
               "A seed's episodes share its scene, so the seed, not the episode, is the unit of the test: each seed's "
               "difference (successes of one method minus the other's, over the trainings) enters an exact sign-flip test. "
               "Success intervals above likewise count a seed's episodes as fewer than independent ones (Kish's design "
               "effect).\n" if n > 1 else "One training: the exact test is McNemar's on the discordant episodes.\n"),
               paired_table(summary["paired"])]
    for variant, paired in summary.get("paired_by_challenger", {}).items():
        md += [f"### {NAMES.get(variant, variant)} against the baselines\n",
               "The same pairing, with this VINN variant as the reference; Holm-corrected over every variant's comparisons "
               "with the baselines together, so that 'some variant beats BC' is one corrected claim.\n",
               paired_table(paired, variant)]
    return md


def bc_section(results: dict[str, Any]) -> list[str]:
    if not any(t.get("bc_training") for t in trainings_of(results)):
        return []
    offline = {m: over_trainings(results, "offline", m, "mse") for m in ("vinn", "bc_rep")}
    compare = (f" BC-rep's offline validation MSE is {offline['bc_rep']:.4f} against VINN's {offline['vinn']:.4f} on the same encoder "
               f"(means over trainings)." if None not in offline.values() else "")
    return ["\n## BC training\n",
            "Every BC stops once its validation loss has not improved for its patience (converged) or at its epoch cap, where "
            f"it counts as converged only on a plateau (less than {100 * PLATEAU_TOLERANCE:.0f}% lower over its last patience "
            "epochs; the table says which); the learning rate drops after validation plateaus and the best "
            f"validation epoch's weights are kept.{compare}\n", bc_training_table(results), "\n![BC training](bc_training.png)\n"]


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
        how = (f"VINN and BC-rep with n demos keep training 0's encoder (BYOL on all {args['demos']} demos' frames) and VINN its k "
               "(--sweep-shared-encoder): they see more data than BC, which learns from the n demos alone."
               if args.get("sweep_shared_encoder") else
               "Every method learns from the n demos alone: VINN's BYOL encoder and k too, and BC-rep sits on that encoder.")
        md += ["\n## Success vs number of demonstrations\n", f"{how} One training each (seed 0).\n", markdown_table(["demos", *[NAMES.get(m, m) for m in methods]], [
            [n, *[f"{_pct(v['summary'][m]['success_rate'])} [{_pct(v['summary'][m]['wilson_95'][0])}, "
                  f"{_pct(v['summary'][m]['wilson_95'][1])}]" for m in methods]] for n, v in sweep.items()]),
               "\n![demos](demos.png)\n"]
    if trainings_of(results)[0].get("k_curve_val"):
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
    return "\n".join([*header_section(results), *success_sections(results, summary), *bc_section(results), *uncertainty_section(summary),
                      *diagnostics_section(results), *sweep_sections(results), *time_and_videos_section(results)]) + "\n"


def write_report(out: str | Path, results: dict[str, Any]) -> None:
    """results.json, report.md and the plots of one run, in `out`."""
    out = Path(out)
    args = results["args"]
    atomic_write_text(out / "results.json", json.dumps(results, indent=2))  # key order = run order
    atomic_write_text(out / "report.md", report_markdown(results))
    plot_success(in_run_order(results), out / "success.png", f"{args['task']}: {args['episodes']} episodes per method")
    plot_k(results, out / "k.png")
    plot_bc_training(results, out / "bc_training.png")
    plot_demos(results, out / "demos.png")
    plot_uncertainty(results, out / "uncertainty.png")
