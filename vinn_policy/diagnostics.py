"""Measured checks of VINN's assumptions (Pari et al. 2022) for a demonstration set and an encoder (docs/method.md, "Why it acted").

- Action consistency: do visual neighbours act alike? For held-out frames (leave one episode out), the
  spread of the k neighbours' actions against that of k random frames, and the Spearman correlation between
  embedding distance and action distance over random frame pairs.
- Multimodality: the fraction of queries whose neighbours' actions split into opposing groups, where the
  weighted mean is an action no demonstration took (two strategies, or two phases that look alike).
- Coverage: nearest-neighbour distances met in closed loop against those between demonstrations.

Translation dimensions only: the gripper is voted on, never averaged (see database.py).

    python -m vinn_policy.diagnostics --demos data/stack-v1_84px.hdf5 --encoder runs/stack/policies/training0/vinn --rollouts 10
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.stats import spearmanr

from vinn_policy.actions import GRIPPER_INDEX
from vinn_policy.database import EmbeddingDatabase, Neighbours
from vinn_policy.lwr import opposing_groups, translation, typical_action_norm

# Verdict thresholds (documented in the report): below CONSISTENT the neighbours' actions agree far more than
# chance; above INCONSISTENT the embedding says little about the action.
CONSISTENT, INCONSISTENT = 0.5, 0.8
MULTIMODAL_FRACTION = 0.1  # more queries than this with opposing neighbour groups: averaging is a real risk
COVERAGE_BEYOND = 0.1  # more rollout steps than this beyond the demonstrations' 95th percentile: out of coverage


def _spread(groups: NDArray[np.float32]) -> NDArray[np.float32]:
    """(B, k, A) -> (B,) root mean squared distance of each group's actions from their mean."""
    return np.sqrt(((groups - groups.mean(1, keepdims=True)) ** 2).sum(-1).mean(1))


def action_consistency(db: EmbeddingDatabase, k: int, max_queries: int = 2000, pairs: int = 20000, seed: int = 0,
                       neighbours: Neighbours | None = None) -> dict[str, Any]:
    """Neighbour action spread vs random-frame spread (ratio < 1: neighbours agree), and distance rank correlation.

    `neighbours`: `db.leave_one_episode_out(k, max_queries=max_queries, seed=seed)` if already computed.
    """
    rng = np.random.default_rng(seed)
    rows = db.held_out_rows(max_queries, seed)
    nb = neighbours if neighbours is not None else db.leave_one_episode_out(k, rows=rows)
    actions = translation(db.actions.numpy(), db.gripper_index)
    k = nb.indices.shape[1]
    # k random frames from other episodes for each query (rejection: redraw same-episode picks)
    rand = rng.integers(0, len(db), (len(rows), k))
    for _ in range(20):
        clash = db.episode_ids[rand] == db.episode_ids[rows][:, None]
        if not clash.any():
            break
        rand[clash] = rng.integers(0, len(db), int(clash.sum()))
    neighbour_spread = float(_spread(translation(nb.neighbour_actions, db.gripper_index)).mean())
    random_spread = float(_spread(actions[rand]).mean())
    i, j = rng.integers(0, len(db), pairs), rng.integers(0, len(db), pairs)
    keep = db.episode_ids[i] != db.episode_ids[j]
    i, j = i[keep], j[keep]
    emb = db.embeddings.numpy()
    rho = spearmanr(np.linalg.norm(emb[i] - emb[j], axis=1), np.linalg.norm(actions[i] - actions[j], axis=1)).statistic
    ratio = neighbour_spread / max(random_spread, 1e-12)
    verdict = "holds" if ratio < CONSISTENT else "weak" if ratio < INCONSISTENT else "violated"
    return {"k": k, "queries": len(rows), "neighbour_spread": neighbour_spread, "random_spread": random_spread,
            "spread_ratio": ratio, "rank_correlation": float(rho), "pairs": int(keep.sum()), "verdict": verdict}


def multimodality(nb: Neighbours, gripper_index: int | None, action_norm: float, min_share: float = 0.2) -> dict[str, Any]:
    """Fraction of queries whose neighbours split into opposing groups (`opposing_groups`, min_norm = norm / 4)."""
    flags, _ = opposing_groups(translation(nb.neighbour_actions, gripper_index), nb.weights, action_norm / 4, min_share)
    fraction = float(flags.mean())
    return {"fraction": fraction, "queries": len(flags), "min_share": min_share, "min_norm": action_norm / 4,
            "flagged_frames": np.flatnonzero(flags).tolist()[:50],
            "verdict": on_threshold("violated" if fraction > MULTIMODAL_FRACTION else "holds", fraction, len(flags),
                                    MULTIMODAL_FRACTION)}


def coverage(demo_distances: NDArray, rollout_distances: NDArray) -> dict[str, Any]:
    """Nearest-neighbour distances in closed loop against those between demonstrations (leave one episode out)."""
    demo, roll = np.asarray(demo_distances, np.float64), np.asarray(rollout_distances, np.float64)
    if len(demo) == 0 or len(roll) == 0:
        raise ValueError(f"coverage needs demonstration and rollout distances; got {len(demo)} and {len(roll)}.")
    p95 = float(np.quantile(demo, 0.95))
    beyond = float((roll > p95).mean())
    return {"demo_median": float(np.median(demo)), "demo_p95": p95, "rollout_median": float(np.median(roll)),
            "rollout_p95": float(np.quantile(roll, 0.95)), "rollout_steps": len(roll), "beyond_demo_p95": beyond,
            "verdict": on_threshold("violated" if beyond > COVERAGE_BEYOND else "holds", beyond, len(roll), COVERAGE_BEYOND)}


def on_threshold(verdict: str, fraction: float, n: int, threshold: float) -> str:
    """`verdict`, marked "(on the threshold)" when the fraction's Wilson 95% interval over its n counts (steps or
    frames; correlated in time, so if anything too narrow) holds the threshold: the data cannot tell the sides apart."""
    from scipy.stats import binomtest

    ci = binomtest(round(fraction * n), n).proportion_ci(method="wilson")
    return f"{verdict} (on the threshold)" if ci.low <= threshold <= ci.high else verdict


@dataclass
class Diagnosis:
    consistency: dict[str, Any]
    multimodality: dict[str, Any]
    coverage: dict[str, Any] | None
    demo_nn_distances: NDArray[np.float32]  # leave-one-episode-out nearest distances (for plots)

    def to_dict(self) -> dict[str, Any]:
        return {"action_consistency": self.consistency, "multimodality": self.multimodality, "coverage": self.coverage}


def diagnose(db: EmbeddingDatabase, k: int, rollout_nn_distances: NDArray | None = None, max_queries: int = 2000,
             seed: int = 0) -> Diagnosis:
    """All three diagnostics for one database (coverage only when closed-loop nearest distances are given)."""
    nb = db.leave_one_episode_out(k, max_queries=max_queries, seed=seed)
    demo_nn = nb.distances[:, 0]
    cov = coverage(demo_nn, rollout_nn_distances) if rollout_nn_distances is not None and len(rollout_nn_distances) else None
    return Diagnosis(action_consistency(db, k, max_queries, seed=seed, neighbours=nb),
                     multimodality(nb, db.gripper_index, typical_action_norm(db.actions.numpy(), db.gripper_index)), cov, demo_nn)


def verdict_table(diagnosis: dict[str, Any]) -> list[list[str]]:
    """Rows [assumption, measurement, verdict] for a markdown table."""
    c, m, cov = diagnosis["action_consistency"], diagnosis["multimodality"], diagnosis.get("coverage")
    rows = [["action consistency", f"neighbour/random action spread {c['spread_ratio']:.2f}; "
             f"Spearman(embedding, action distance) {c['rank_correlation']:.2f}", c["verdict"]],
            ["unimodality", f"{100 * m['fraction']:.1f}% of {m['queries']} held-out frames have opposing neighbour groups",
             m["verdict"]]]
    if cov:
        rows.append(["coverage", f"{100 * cov['beyond_demo_p95']:.1f}% of {cov['rollout_steps']} closed-loop steps beyond the "
                     f"demos' 95th-percentile NN distance ({cov['demo_p95']:.2f}); medians {cov['rollout_median']:.2f} vs "
                     f"{cov['demo_median']:.2f}", cov["verdict"]])
    return rows


def write_report(diagnosis: Diagnosis, out: Path, title: str, rollout_nn_distances: NDArray | None = None) -> Path:
    """diagnostics.json, diagnostics.md and coverage.png (when rollouts were given) into `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vinn_policy.artefact import atomic_write_text
    from vinn_policy.harness.results import markdown_table

    out.mkdir(parents=True, exist_ok=True)
    data = diagnosis.to_dict()
    atomic_write_text(out / "diagnostics.json", json.dumps(data, indent=2))
    md = [f"# Assumption diagnostics: {title}", "",
          markdown_table(["assumption", "measured", "verdict"], verdict_table(data)), "",
          f"Thresholds: consistency holds below a spread ratio of {CONSISTENT} (violated above {INCONSISTENT}); "
          f"unimodality is violated above {100 * MULTIMODAL_FRACTION:.0f}% flagged frames; coverage above "
          f"{100 * COVERAGE_BEYOND:.0f}% of steps beyond the 95th percentile (5% expected in distribution).", ""]
    if rollout_nn_distances is not None and len(rollout_nn_distances):
        fig, ax = plt.subplots(figsize=(5, 3))
        bins = np.linspace(0, max(diagnosis.demo_nn_distances.max(), np.max(rollout_nn_distances)), 40)
        ax.hist(diagnosis.demo_nn_distances, bins, density=True, alpha=0.6, label="demos (leave one episode out)")
        ax.hist(rollout_nn_distances, bins, density=True, alpha=0.6, label="closed-loop steps")
        ax.set(xlabel="nearest-neighbour distance", ylabel="density", title="coverage")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "coverage.png", dpi=110)
        plt.close(fig)
        md += ["![coverage](coverage.png)", ""]
    atomic_write_text(out / "diagnostics.md", "\n".join(md))
    return out / "diagnostics.md"


@dataclass
class DiagnoseArgs:
    """Assumption diagnostics for a demonstration file and an encoder; writes diagnostics.{json,md} (+ coverage.png)."""

    demos: str
    """Demonstration HDF5 file (e.g. data/stack-v1_84px.hdf5)."""
    encoder: str
    """An encoder artefact (runs/cache/byol-*/encoder) or a saved VINN policy (its encoder is used)."""
    k: int = 10
    episodes: int | None = None
    """Use the file's first N demonstrations (default: all)."""
    rollouts: int = 0
    """Closed-loop VINN episodes (held-out seeds) for the coverage check; 0 skips it."""
    block: int = 1
    """Evaluation block of the rollouts' seeds (1_000_000 + 1000·block + i): a development block; the test block (0) is
    kept for the benchmarks' final runs."""
    workers: int = 2
    max_queries: int = 2000
    out: str | None = None
    """Report directory (default runs/diagnostics/<demo file stem>)."""

    def __post_init__(self) -> None:
        from vinn_policy.demos.collect import check_development_block

        check_development_block(self.block)


def load_encoder(path: str | Path):
    """An Encoder from an encoder artefact, or the encoder inside a saved VINN policy."""
    from vinn_policy.artefact import ArtefactError
    from vinn_policy.encoder import Encoder
    from vinn_policy.policy import VINNPolicy

    try:
        return Encoder.load(path)
    except ArtefactError as first:
        try:
            return VINNPolicy.load(path).encoder
        except ArtefactError:
            raise ArtefactError(f"{path} is neither an encoder nor a VINN policy artefact ({first}).") from first


def run(args: DiagnoseArgs) -> dict[str, Any]:
    import functools
    import tempfile

    from vinn_policy.demos.collect import block_seeds
    from vinn_policy.demos.dataset import load_demos
    from vinn_policy.envs import TASKS, make_env
    from vinn_policy.harness.evaluation import evaluate_methods
    from vinn_policy.policy import VINNPolicy

    data = load_demos(args.demos, max_episodes=args.episodes)
    encoder = load_encoder(args.encoder)
    policy = VINNPolicy.fit(data.frames, data.actions, data.episode_ids, encoder=encoder, k=args.k, gripper_index=GRIPPER_INDEX,
                            frame_indices=data.frame_indices)
    rollout_nn = None
    if args.rollouts:
        task = next((t for t, (env_id, _) in TASKS.items() if env_id == data.env_args.get("env_name")), None)
        if task is None:
            raise ValueError(f"{args.demos} was not collected from one of this package's envs ({data.env_args.get('env_name')}); "
                             "coverage rollouts need --rollouts 0.")
        with tempfile.TemporaryDirectory() as tmp:
            path = policy.save(Path(tmp) / "vinn")
            make = functools.partial(make_env, task, image_size=data.frames.shape[1], render_mode=None,
                                     camera=data.image_key.removesuffix("_image"))  # the demos' camera, not the task's default
            rows = evaluate_methods(make, {"vinn": path}, list(block_seeds(args.block, args.rollouts)), args.workers)
        rollout_nn = np.concatenate([r["nn_distance"] for r in rows])
        print(f"rollouts: {sum(r['success'] for r in rows)}/{len(rows)} succeeded")
    diagnosis = diagnose(policy.database, args.k, rollout_nn, args.max_queries)
    out = Path(args.out or Path("runs/diagnostics") / Path(args.demos).stem)
    report = write_report(diagnosis, out, f"{Path(args.demos).name} with {args.encoder}", rollout_nn)
    print(report.read_text())
    return diagnosis.to_dict()


if __name__ == "__main__":
    import tyro

    try:
        run(tyro.cli(DiagnoseArgs))
    except Exception as e:
        raise SystemExit(f"diagnostics: {e}") from e
