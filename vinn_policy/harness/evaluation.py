"""Closed-loop evaluation: every method on the same seeds, success intervals and paired comparisons."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import mannwhitneyu, norm
from tqdm.auto import tqdm

from vinn_policy.artefact import artefact_digest, atomic_write_text
from vinn_policy.baselines import load_policy
from vinn_policy.harness.rollout import Episode, run_jobs


def wilson_interval(successes: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a success rate; `n` may be an effective (non-integer) number of episodes."""
    if n <= 0:
        return (0.0, 1.0)
    z, rate = float(norm.ppf(0.5 + confidence / 2)), successes / n
    centre, half = rate + z * z / (2 * n), z * np.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    return (float(min(rate, max(0.0, (centre - half) / scale))), float(max(rate, min(1.0, (centre + half) / scale))))  # rounding


def seed_of(key: Any) -> Any:
    """The episode seed of an outcome's key: a seed, or (training, seed)."""
    return key[1] if isinstance(key, tuple) else key


def design_effect(outcomes: dict[Any, bool]) -> float:
    """How much less than independent episodes outcomes pooled over trainings are worth: episodes on one seed share its
    scene, so they are correlated. Kish's 1 + (m - 1)·ICC, m = episodes per seed, ICC by one-way ANOVA over seeds
    (clipped to [0, 1]; 1 where every outcome is the same: no variation to estimate it from, so the cautious end,
    which makes an all-success interval wider than one with a single failure). 1 with one episode per seed."""
    by_seed: dict[Any, list[bool]] = {}
    for key, ok in outcomes.items():
        by_seed.setdefault(seed_of(key), []).append(ok)
    groups = [np.asarray(v, dtype=float) for v in by_seed.values()]
    n, k = sum(len(g) for g in groups), len(groups)
    if k < 2 or n == k:
        return 1.0
    mean = np.mean(np.concatenate(groups))
    between = sum(len(g) * (g.mean() - mean) ** 2 for g in groups) / (k - 1)
    within = sum(((g - g.mean()) ** 2).sum() for g in groups) / (n - k)
    m0 = (n - sum(len(g) ** 2 for g in groups) / n) / (k - 1)
    denominator = between + (m0 - 1) * within
    icc = 1.0 if denominator == 0 else float(np.clip((between - within) / denominator, 0.0, 1.0))
    return 1 + (sum(len(g) ** 2 for g in groups) / n - 1) * icc  # Kish's size-weighted m: n / k when every seed has every training


def pooled_interval(outcomes: dict[Any, bool], confidence: float = 0.95) -> tuple[float, float]:
    """Wilson interval of a success rate pooled over trainings, on the effective number of episodes (n / design effect):
    plain Wilson with one training."""
    n = len(outcomes)
    if n == 0:
        return (0.0, 1.0)
    effective = n / design_effect(outcomes)
    return wilson_interval(sum(outcomes.values()) / n * effective, effective, confidence)


def sign_flip_p(differences: Sequence[int]) -> float:
    """Exact two-sided p of the paired sign-flip (permutation) test on integer per-seed differences: under "no
    difference" each seed's difference is as likely negated. With differences of ±1 (one training) it is exact McNemar."""
    sizes = [abs(int(d)) for d in differences if d]
    if not sizes:
        return 1.0
    total = sum(sizes)
    dist = np.zeros(2 * total + 1)  # P(sum of ±sizes = v - total)
    dist[total] = 1.0
    for d in sizes:
        dist = (np.roll(dist, d) + np.roll(dist, -d)) / 2  # no wrap-around: |partial sums| <= total
    observed = abs(int(sum(differences)))
    return float(min(1.0, dist[np.abs(np.arange(-total, total + 1)) >= observed].sum()))


def paired_comparison(a: dict[Any, bool], b: dict[Any, bool]) -> dict[str, Any]:
    """Per-episode comparison of two methods on the same episodes (keyed by seed, or by (training, seed)).

    Returns counts of episodes where both / only a / only b / neither succeeded, and the exact two-sided p of the
    paired sign-flip test over *seeds*: each seed's difference is a's successes minus b's over the trainings, since a
    seed's episodes share its scene and are not independent. With one training this is exact McNemar.
    """
    keys = sorted(set(a) & set(b))
    only_a = sum(a[s] and not b[s] for s in keys)
    only_b = sum(b[s] and not a[s] for s in keys)
    both = sum(a[s] and b[s] for s in keys)
    per_seed: dict[Any, int] = {}
    for key in keys:
        per_seed[seed_of(key)] = per_seed.get(seed_of(key), 0) + int(a[key]) - int(b[key])
    return {"episodes": len(keys), "seeds": len(per_seed), "both": both, "only_a": only_a, "only_b": only_b,
            "neither": len(keys) - both - only_a - only_b, "paired_p": sign_flip_p(list(per_seed.values()))}


def step_trace(policy: Any, provenance: bool = False) -> dict[str, Any] | None:
    """Per-step record of a VINN policy after act(): its uncertainty, and with `provenance` its neighbours."""
    if not hasattr(policy, "uncertainty"):
        return None
    u = policy.uncertainty()
    row: dict[str, Any] = {"score": float(u.score[0]), "distance": float(u.distance[0]), "spread": float(u.spread[0]),
                           "nn_distance": float(policy.last_neighbours.distances[0, 0])}
    if getattr(policy, "plan", None) is not None:  # chunked: which step of the plan from the last query this was
        row["plan_step"] = int(policy.plan.step[0])
    if provenance:
        row["neighbours"] = policy.last_neighbours.rows()  # the query's (a chunk's: the query that planned it)
        if "plan_step" in row:
            row["plan_sources"] = policy.plan.sources(policy.database)  # the frames this step's action replays
    return row


def failure_auroc(rows: list[dict[str, Any]], key: str = "uncertainty_max") -> dict[str, Any]:
    """How well an episode's uncertainty predicts its failure: AUROC (Mann-Whitney U / (n_fail * n_success)).

    0.5 = no better than chance, 1 = every failure scored above every success; None without both outcomes.
    """
    fail = [r[key] for r in rows if not r["success"] and r.get(key) is not None]
    ok = [r[key] for r in rows if r["success"] and r.get(key) is not None]
    auroc = float(mannwhitneyu(fail, ok).statistic / (len(fail) * len(ok))) if fail and ok else None
    return {"auroc": auroc, "failures": len(fail), "successes": len(ok), "score": key}


def evaluate_methods(
    make_env: Callable[[], Any],
    policy_dirs: dict[str, str | Path],
    seeds: Sequence[int],
    workers: int = 2,
    progress: bool = True,
    provenance: bool = False,
    cache_dir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Roll out every saved policy on the same seeds; one row per (method, seed).

    Workers load each policy from its artefact directory, so what is evaluated is exactly what was saved.
    VINN rows also carry the per-step uncertainty (and, with `provenance`, every step's neighbours).
    With `cache_dir`, each policy's rows are kept under cache_dir/eval-<hash>.json as soon as its last episode ends
    (see `evaluation_key`), and a policy with rows there is not rolled out again: a long run that was stopped
    resumes where it was.
    """
    keys = {m: evaluation_key(p, make_env, seeds) for m, p in policy_dirs.items()} if cache_dir and not provenance else {}
    done = {m: rows for m, key in keys.items() if key and (rows := _cached_rows(Path(cache_dir), key, m)) is not None}
    todo = {m: p for m, p in policy_dirs.items() if m not in done}
    jobs = [(m, functools.partial(load_policy, str(p)), int(s)) for m, p in todo.items() for s in seeds]
    fresh: dict[str, list[dict[str, Any]]] = {m: [] for m in todo}
    bar, successes = None, 0
    trace = functools.partial(step_trace, provenance=provenance)
    for i, episode in enumerate(run_jobs(make_env, jobs, workers, trace=trace) if jobs else ()):
        method = jobs[i][0]
        if i % len(seeds) == 0:  # one bar per method, with its running success rate
            if bar is not None:
                bar.close()
            bar, successes = tqdm(total=len(seeds), desc=f"eval {method}", unit="ep", disable=not progress), 0
        successes += episode.success
        fresh[method].append(episode_row(method, episode))
        bar.update(1)
        bar.set_postfix(success=f"{successes / (i % len(seeds) + 1):.0%}")
        if len(fresh[method]) == len(seeds) and keys.get(method):
            atomic_write_text(Path(cache_dir) / f"eval-{keys[method]}.json", json.dumps(fresh[method]))
    if bar is not None:
        bar.close()
    if done and progress:
        print(f"evaluation: {sorted(done)} reused from {cache_dir} (same policy, env and seeds)", flush=True)
    return [row for m in policy_dirs for row in (done.get(m) or fresh[m])]


EVALUATION_CACHE_VERSION = 1
"""Part of every evaluation cache key: bump it when rollouts of the same policy, env and seed would change."""


def evaluation_key(policy_dir: str | Path, make_env: Callable[[], Any], seeds: Sequence[int]) -> str | None:
    """What determines a policy's evaluation rows: its artefact (config.json's digest, which covers the weights), the
    env (make_env's arguments: a functools.partial of make_env(task, ...)) and the seeds. None (no caching) when the
    env cannot be described that way."""
    if not isinstance(make_env, functools.partial) or not (Path(policy_dir) / "config.json").exists():
        return None
    try:
        env = json.dumps({"fn": getattr(make_env.func, "__qualname__", str(make_env.func)), "args": make_env.args,
                          "kwargs": make_env.keywords}, sort_keys=True)
    except TypeError:  # an argument JSON cannot hold: no stable key
        return None
    parts = (artefact_digest(policy_dir), env, json.dumps([int(s) for s in seeds]), str(EVALUATION_CACHE_VERSION))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def _cached_rows(cache_dir: Path, key: str, method: str) -> list[dict[str, Any]] | None:
    """A policy's cached rows under this run's method name, or None if there are none (or they are unreadable)."""
    try:
        rows = json.loads((cache_dir / f"eval-{key}.json").read_text())
    except (OSError, ValueError):
        return None
    return [{**row, "method": method} for row in rows] if isinstance(rows, list) else None


def episode_row(method: str, episode: Episode) -> dict[str, Any]:
    row = {"method": method, "seed": episode.seed, "success": episode.success, "steps": episode.steps,
           "first_success_step": episode.first_success_step, "wall_time": round(episode.wall_time, 3)}
    if episode.trace:
        scores = [t["score"] for t in episode.trace]
        row.update(uncertainty=[round(x, 3) for x in scores], uncertainty_max=max(scores), uncertainty_mean=float(np.mean(scores)),
                   nn_distance=[round(t["nn_distance"], 4) for t in episode.trace])  # for the coverage diagnostic
        if "neighbours" in episode.trace[0]:
            row["provenance"] = [t["neighbours"] for t in episode.trace]
    return row


def holm(p_values: dict[Any, float]) -> dict[Any, float]:
    """Holm-Bonferroni adjusted p-values of a family of tests (one per baseline compared with the reference):
    the i-th smallest p is multiplied by (m - i), then made monotone; reject where the adjusted p < alpha."""
    order = sorted(p_values, key=p_values.get)
    adjusted, running = {}, 0.0
    for i, name in enumerate(order):
        running = max(running, min(1.0, (len(order) - i) * p_values[name]))
        adjusted[name] = running
    return {name: adjusted[name] for name in p_values}


def paired_verdict(paired: dict[str, Any], alpha: float = 0.05) -> str:
    """What a Holm-corrected paired comparison allows one to say (not 'equal' when it is not significant)."""
    if paired["holm_p"] >= alpha:
        return "no significant difference"
    return "reference better" if paired["only_a"] > paired["only_b"] else "baseline better"


def paired_with(reference: dict[tuple[int, int], bool], other: dict[tuple[int, int], bool]) -> dict[tuple[int, int], bool]:
    """`other`'s outcomes keyed like `reference`'s (training, seed) episodes: a method evaluated in one training only
    (open-loop, random: nothing to train) is paired with every training of the reference on the same seed."""
    trainings = {t for t, _ in other}
    if len(trainings) != 1:
        return other
    (only,) = trainings
    return {(t, s): other[(only, s)] for t, s in reference if (only, s) in other}


def training_spread(outcomes: dict[tuple[int, int], bool]) -> dict[str, Any]:
    """Success per training (in training order), their mean and sample standard deviation (0 for one training)."""
    rates = [float(np.mean([ok for (t, _), ok in outcomes.items() if t == training])) for training in sorted({t for t, _ in outcomes})]
    return {"per_training": rates, "mean": float(np.mean(rates)), "std": float(np.std(rates, ddof=1)) if len(rates) > 1 else 0.0}


def summarize(rows: list[dict[str, Any]], reference: str = "vinn", challengers: Sequence[str] = ()) -> dict[str, Any]:
    """Per-method success (pooled over trainings, with a Wilson interval on the effective number of episodes, and per
    training with mean and spread), and each method paired against `reference` on the same seeds, pooling trainings
    (exact sign-flip test over seeds, Holm-corrected over the methods compared). Each of `challengers` present (e.g.
    VINN variants) is also paired against every method other than the reference and the challengers, in one Holm
    family over all of them, under summary["paired_by_challenger"][name]. Rows without a "training" are training 0."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by_method = {m: {(r.get("training", 0), r["seed"]): bool(r["success"]) for r in rows if r["method"] == m} for m in methods}
    summary: dict[str, Any] = {"methods": {}, "paired": {}}
    for m in methods:
        outcomes = by_method[m]
        s, n = sum(outcomes.values()), len(outcomes)
        steps = [r["steps"] for r in rows if r["method"] == m and r["success"]]
        summary["methods"][m] = {"successes": s, "episodes": n, "success_rate": s / n if n else 0.0,
                                 "wilson_95": pooled_interval(outcomes), "design_effect": design_effect(outcomes),
                                 "mean_steps_success": float(np.mean(steps)) if steps else None, **training_spread(outcomes)}
        method_rows = [r for r in rows if r["method"] == m]
        if any("uncertainty_max" in r for r in method_rows):
            summary["methods"][m]["failure_auroc"] = {k: failure_auroc(method_rows, k) for k in ("uncertainty_max", "uncertainty_mean")}
    if reference in by_method:
        summary["paired"] = paired_family(by_method, [(reference, m) for m in methods if m != reference]).get(reference, {})
    present = [c for c in challengers if c in by_method and c != reference]
    baselines = [m for m in methods if m != reference and m not in present]
    if present and baselines:  # one Holm family over every variant against every baseline: "some variant beats BC" is one claim
        summary["paired_by_challenger"] = paired_family(by_method, [(c, m) for c in present for m in baselines])
    return summary


def paired_family(by_method: dict[str, dict[tuple[int, int], bool]], pairs: Sequence[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """Each (reference, other) pair compared episode by episode, Holm-corrected over the whole family, with verdicts;
    as {reference: {other: comparison}}."""
    tests = {(r, m): paired_comparison(by_method[r], paired_with(by_method[r], by_method[m])) for r, m in pairs}
    adjusted = holm({pair: t["paired_p"] for pair, t in tests.items()})
    out: dict[str, dict[str, Any]] = {}
    for (r, m), t in tests.items():
        t["holm_p"] = adjusted[(r, m)]
        t["verdict"] = paired_verdict(t)
        out.setdefault(r, {})[m] = t
    return out
