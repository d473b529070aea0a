"""Why VINN fails stack: do the nearest demonstration frames put cube A where it really is?

    python benchmarks/stack_analysis.py        # ~5 min with the benchmark's cached encoder (30 rollouts)

For the approach frames (the first 12 steps) of the validation demonstrations, the k nearest training frames
are found with each representation; then, from the privileged state recorded in the demo file, how far
each neighbour's cube A (and cube B) offset from the gripper is from the query's, and how far their mean
action is from the expert's. The oracles search by the true offsets: what nearest neighbours over these
50 demonstrations could do at best. Then VINN itself (the benchmark's encoder and k) runs closed loop on
the first evaluation seeds, and each episode's failure is read off the simulator's state.
Writes benchmarks/results/stack/analysis.{json,md}.
"""

from __future__ import annotations

import functools
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from vinn_policy.demos.collect import EVAL_SEED_BASE
from vinn_policy.demos.dataset import Demos, load_obs
from vinn_policy.envs import make_env

from vinn_policy.benchmark import GRIPPER, BenchmarkArgs, build_encoder, choose_k
from vinn_policy.encoder import Encoder
from vinn_policy.pipeline import demo_path, ensure_demos
from vinn_policy.policy import VINNPolicy
from vinn_policy.results import environment, markdown_table, write_results
from vinn_policy.rollout import rollouts

OUTCOMES = ("stacked", "never closed the gripper", "closed away from cube A", "closed at A, never lifted it",
            "lifted A, never carried it over B", "carried A over B, never stacked it")


@dataclass
class Args:
    demos: int = 50
    """Training demos (the database); the next 20% (at least 2) are the queries, as in run_stack.py."""
    k: int = 10
    approach_steps: int = 12
    data_dir: str = "data"
    cache_dir: str = "runs/cache"
    out: str = "benchmarks/results/stack"
    name: str = "analysis"
    episodes: int = 30
    """Closed-loop VINN episodes (the first evaluation seeds) whose failures are classified; 0 skips them."""
    workers: int = 2
    smoke: bool = False
    """Seconds: run_stack.py's smoke sizes (4 demos at 32 px, 1 BYOL epoch)."""


def classify(eef: np.ndarray, cube_a: np.ndarray, cube_b: np.ndarray, gripper: np.ndarray, success: bool) -> str:
    """One of OUTCOMES for an episode: (T, 3) positions before each action (m), (T,) gripper commands (> 0 closes)."""
    if success:
        return OUTCOMES[0]
    closes = np.flatnonzero(gripper > 0)
    if not len(closes):
        return OUTCOMES[1]
    first = closes[0]
    if np.linalg.norm((eef[first] - cube_a[first])[:2]) > 0.03:  # cube A is 4 cm wide: the fingers missed it
        return OUTCOMES[2]
    lifted = cube_a[:, 2] - cube_a[0, 2] > 0.02
    if not lifted.any():
        return OUTCOMES[3]
    if np.linalg.norm((cube_a - cube_b)[lifted, :2], axis=1).min() > 0.02:
        return OUTCOMES[4]
    return OUTCOMES[5]


def closed_loop_failures(args: Args, bench: BenchmarkArgs, data: Demos, train: np.ndarray, encoder: Encoder, k: int) -> dict:
    """Run VINN on the first `args.episodes` evaluation seeds, recording the state, and classify each episode."""
    policy = VINNPolicy.fit(data.frames[train], data.actions[train], data.episode_ids[train], encoder=encoder, k=k, gripper_index=GRIPPER)
    seeds = range(EVAL_SEED_BASE, EVAL_SEED_BASE + args.episodes)
    make = functools.partial(make_env, "stack", image_size=bench.image_px, render_mode=None, horizon=bench.horizon)
    outcomes, switches = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        path = policy.save(Path(tmp) / "vinn")
        for episode in rollouts(make, functools.partial(VINNPolicy.load, path), seeds, args.workers, record=True):
            obs, grip = episode.obs, episode.actions[:, GRIPPER]
            outcomes[episode.seed] = classify(obs["robot0_eef_pos"], obs["cubeA_pos"], obs["cubeB_pos"], grip, episode.success)
            switches.append(int((np.diff(grip > 0) != 0).sum()))
    counts = Counter(outcomes.values())
    return {"k": k, "seeds": list(seeds), "outcomes": {str(s): o for s, o in outcomes.items()},
            "counts": {o: counts[o] for o in OUTCOMES}, "median_gripper_switches": float(np.median(switches))}


def main(args: Args) -> dict:
    bench = BenchmarkArgs(task="stack", demos=args.demos, cache_dir=args.cache_dir, data_dir=args.data_dir, smoke=args.smoke)
    n_train = bench.demos
    data = ensure_demos("stack", n_train + bench.val_demos, args.data_dir, image_size=bench.image_px)
    path = demo_path("stack", args.data_dir, bench.image_px)
    state = load_obs(path, ("robot0_eef_pos", "cubeA_pos", "cubeB_pos"), data.num_episodes)
    offset_a = (state["cubeA_pos"] - state["robot0_eef_pos"])[:, :2]  # (N, 2) m
    offset_b = (state["cubeB_pos"] - state["robot0_eef_pos"])[:, :2]
    train = np.flatnonzero(data.episode_ids < n_train)
    queries = np.flatnonzero((data.episode_ids >= n_train) & (data.frame_indices < args.approach_steps))

    byol, info = build_encoder(bench, data.frames[train])  # the benchmark's encoder (cached when it has run)
    torch.manual_seed(0)
    pixels = torch.from_numpy(data.frames).permute(0, 3, 1, 2).float() / 255
    representations = {
        "BYOL (VINN's encoder)": byol.embed(data.frames),
        "untrained encoder": Encoder(bench.encoder_config()).embed(data.frames),
        "raw pixels, 21x21": F.interpolate(pixels, size=(21, 21), mode="area").flatten(1).numpy(),
        "oracle: cube A offset": offset_a,
        "oracle: both cube offsets": np.concatenate([offset_a, offset_b], 1),
    }
    neighbours = {}
    for name, features in representations.items():
        d = torch.cdist(torch.from_numpy(np.asarray(features[queries], np.float32)),
                        torch.from_numpy(np.asarray(features[train], np.float32)))
        neighbours[name] = train[d.topk(args.k, largest=False).indices.numpy()]  # (Q, k) rows
    neighbours["random training frames (chance)"] = np.random.default_rng(0).choice(train, (len(queries), args.k))
    rows = {}
    for name, nn in neighbours.items():
        rows[name] = {
            "cube_a_error_cm": float(100 * np.linalg.norm(offset_a[nn] - offset_a[queries, None], axis=-1).mean()),
            "cube_b_error_cm": float(100 * np.linalg.norm(offset_b[nn] - offset_b[queries, None], axis=-1).mean()),
            "action_error": float(np.linalg.norm(data.actions[nn][..., :3].mean(1) - data.actions[queries, :3], axis=-1).mean()),
        }
    spread = float(100 * np.linalg.norm(offset_a[queries] - offset_a[queries].mean(0), axis=1).mean())
    result = {"args": asdict(args), "environment": environment(), "encoder": info.get("path"), "queries": len(queries),
              "cube_a_spread_cm": spread, "representations": rows}
    md = (f"# Stack: where the neighbours put cube A\n\n{len(queries)} approach frames (first {args.approach_steps} steps) of "
          f"{bench.val_demos} validation demos, k = {args.k} nearest among {len(train)} frames of {n_train} training demos. "
          f"Offsets are the cubes' horizontal positions relative to the gripper (the queries' own cube A offsets "
          f"spread {spread:.1f} cm around their mean); the mean-action error is the distance between the neighbours' "
          f"plain mean translation action and the expert's. Random training frames show the level of chance.\n\n" +
          markdown_table(["nearest neighbours by", "cube A offset error (cm)", "cube B offset error (cm)", "mean-action error"],
                         [[n, f"{r['cube_a_error_cm']:.1f}", f"{r['cube_b_error_cm']:.1f}", f"{r['action_error']:.3f}"]
                          for n, r in rows.items()]))
    if args.episodes:
        k = choose_k(representations["BYOL (VINN's encoder)"], data, train, np.flatnonzero(data.episode_ids >= n_train))[0]
        result["closed_loop"] = loop = closed_loop_failures(args, bench, data, train, byol, k)
        md += (f"\n\n## Where VINN's own episodes fail\n\nVINN (this encoder, k = {k} chosen on the validation demos as "
               f"in run_stack.py) on the first {args.episodes} evaluation seeds, each episode classified by the first "
               f"that applies, from the simulator's state. \"Away from cube A\": the gripper first closed more than "
               f"3 cm from A horizontally. The gripper command switched {loop['median_gripper_switches']:.0f} times "
               f"per episode (median; the expert switches twice).\n\n" +
               markdown_table(["outcome", "episodes"], [[o, str(n)] for o, n in loop["counts"].items()]))
    write_results(args.out, args.name, result, md)
    print(md)
    return result


if __name__ == "__main__":
    import tyro

    main(tyro.cli(Args))
