"""Why VINN fails stack: do the nearest demonstration frames put cube A where it really is?

    python benchmarks/stack_analysis.py        # ~7 min with the benchmark's cached encoder (30 rollouts + the oracle's)
    python benchmarks/stack_analysis.py --oracle-demos --out benchmarks/results/stack_analysis   # committed (~2.5 min: no oracle)

For the approach frames (the first 12 steps) of the validation demonstrations, the k nearest training frames
are found with each representation; then, from the privileged state recorded in the demo file, how far
each neighbour's cube A (and cube B) offset from the gripper is from the query's, and how far their mean
action is from the expert's. The oracles search by the true offsets: what nearest neighbours over these
50 demonstrations could do at best. Then VINN itself (the benchmark's encoder and k) runs closed loop on
the first evaluation seeds, and each episode's failure is read off the simulator's state. Last, the same
locally weighted regression runs closed loop over the privileged state instead of images (both cubes' offsets
from the gripper and its finger joints): the success a perfect encoder would allow with these demonstrations.
Writes <out>/analysis.{json,md} (default runs/stack_analysis).
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
from vinn_policy.demos.dataset import Demos, load_obs
from vinn_policy.envs import make_env

from vinn_policy.actions import GRIPPER_INDEX
from vinn_policy.baselines import StateKNNPolicy, state_features
from vinn_policy.encoder import Encoder
from vinn_policy.harness.args import BenchmarkArgs
from vinn_policy.harness.pipeline import demo_path, ensure_demos
from vinn_policy.harness.results import environment, markdown_table, write_results
from vinn_policy.harness.rollout import rollouts
from vinn_policy.harness.training import build_encoder, choose_k
from vinn_policy.policy import VINNPolicy

OUTCOMES = ("stacked", "carried A over B, never stacked it", "lifted A, never carried it over B", "closed at A, never lifted it",
            "closed only above A", "closed only away from cube A", "never closed the gripper")
NEAR_A = 0.03  # m, gripper to cube A horizontally: the cube is 4 cm wide, so the fingers straddle it
AT_A_HEIGHT = 0.02  # m, gripper above A's centre when it closes (the expert closes 0.5 cm below it)
LIFTED = 0.02  # m, A above where it started
OVER_B = 0.02  # m, A to B horizontally (B is 5 cm wide)


@dataclass
class Args:
    demos: int = 50
    """Training demos (the database); the next 20% (at least 2) are the queries, as in run_stack.py."""
    k: int = 10
    approach_steps: int = 12
    data_dir: str = "data"
    cache_dir: str = "runs/cache"
    out: str = "runs/stack_analysis"
    """Report folder; --out benchmarks/results/stack_analysis refreshes the committed analysis."""
    name: str = "analysis"
    episodes: int = 30
    """Closed-loop VINN episodes (the first seeds of block --seed) whose failures are classified; 0 skips them."""
    seed: int = 1
    """Evaluation block: 1+ are development blocks; 0, the test block, is refused (an analysis informs design)."""
    oracle_demos: tuple[int, ...] | None = None
    """Database sizes of the closed-loop state oracle (default: --demos; its k is chosen on the validation
    demos that follow each database); () skips it."""
    workers: int = 2
    smoke: bool = False
    """Seconds: run_stack.py's smoke sizes (4 demos at 32 px, 1 BYOL epoch)."""


def classify(eef: np.ndarray, cube_a: np.ndarray, cube_b: np.ndarray, gripper: np.ndarray, success: bool) -> tuple[str, dict]:
    """The furthest stage an episode reached (one of OUTCOMES) and the evidence for it.

    eef, cube_a, cube_b: (T, 3) positions before each action (m); gripper: (T,) commands (> 0 closes).
    """
    closes = np.flatnonzero(gripper > 0)
    aside = np.linalg.norm((eef - cube_a)[closes, :2], axis=1)
    above = (eef - cube_a)[closes, 2]
    lifted = cube_a[:, 2] - cube_a[0, 2] > LIFTED
    a_to_b = np.linalg.norm((cube_a - cube_b)[lifted, :2], axis=1)
    evidence = {"closes": len(closes), "nearest_close_cm": round(100 * float(aside.min()), 1) if len(closes) else None,
                "highest_lift_cm": round(100 * float(cube_a[:, 2].max() - cube_a[0, 2]), 1),
                "lifted_a_to_b_cm": round(100 * float(a_to_b.min()), 1) if len(a_to_b) else None}
    stages = [success, len(a_to_b) and a_to_b.min() <= OVER_B, lifted.any(), ((aside <= NEAR_A) & (above <= AT_A_HEIGHT)).any(),
              (aside <= NEAR_A).any(), len(closes) > 0, True]
    return OUTCOMES[next(i for i, reached in enumerate(stages) if reached)], evidence


def gripper_switches(gripper: np.ndarray) -> int:
    return int((np.diff(gripper > 0) != 0).sum())


CUBES = ("cubeA_pos", "cubeB_pos")
STATE_KEYS = ("robot0_eef_pos", *CUBES, "robot0_gripper_qpos")


def classified_rollouts(args: Args, bench: BenchmarkArgs, make_policy) -> dict:
    """Run a policy on the first `args.episodes` evaluation seeds, recording the state, and classify each episode."""
    seeds = bench.eval_seeds()[: args.episodes]  # the first seeds of block --seed
    # privileged: the outcome is classified from the cubes' positions, and the state oracle acts on them.
    make = functools.partial(make_env, "stack", image_size=bench.image_px, horizon=bench.horizon, privileged=True)
    episodes, switches = {}, []
    for episode in rollouts(make, make_policy, seeds, args.workers, record=True):
        obs, grip = episode.obs, episode.actions[:, GRIPPER_INDEX]
        outcome, evidence = classify(obs["robot0_eef_pos"], obs["cubeA_pos"], obs["cubeB_pos"], grip, episode.success)
        episodes[str(episode.seed)] = {"outcome": outcome, "steps": episode.steps, **evidence}
        switches.append(gripper_switches(grip))
    counts = Counter(e["outcome"] for e in episodes.values())
    return {"seeds": seeds, "episodes": episodes, "counts": {o: counts[o] for o in OUTCOMES},
            "successes": counts[OUTCOMES[0]], "median_gripper_switches": float(np.median(switches))}


def closed_loop_failures(args: Args, bench: BenchmarkArgs, data: Demos, train: np.ndarray, val: np.ndarray, encoder: Encoder,
                         k: int) -> dict:
    """VINN's episodes, classified (train, val: the database's and the validation demos' rows; the latter give
    the expert's gripper switches)."""
    policy = VINNPolicy.fit(data.frames[train], data.actions[train], data.episode_ids[train], encoder=encoder, k=k, gripper_index=GRIPPER_INDEX)
    with tempfile.TemporaryDirectory() as tmp:
        result = classified_rollouts(args, bench, functools.partial(VINNPolicy.load, policy.save(Path(tmp) / "vinn")))
    expert = [gripper_switches(data.actions[data.episode_ids == e, GRIPPER_INDEX]) for e in np.unique(data.episode_ids[val])]
    return {"k": k, **result, "expert_median_gripper_switches": float(np.median(expert))}


def state_oracle(args: Args, bench: BenchmarkArgs, data: Demos, features: np.ndarray) -> dict:
    """StateKNNPolicy closed loop over the first n demos for each n in args.oracle_demos (features: (N, 8) of data's rows)."""
    runs = {}
    for n in args.oracle_demos:
        train = np.flatnonzero(data.episode_ids < n)
        val = np.flatnonzero((data.episode_ids >= n) & (data.episode_ids < n + bench.val_demos))
        k = choose_k(features, data, train, val)[0]
        policy = functools.partial(StateKNNPolicy, features[train], data.actions[train], data.episode_ids[train], k, CUBES, GRIPPER_INDEX)
        runs[str(n)] = {"k": k, **classified_rollouts(args, bench, policy)}
    return runs


def main(args: Args) -> dict:
    if args.seed < 1:
        raise SystemExit(f"--seed must be a development block (>= 1); block 0 is the test block. Got {args.seed}.")
    bench = BenchmarkArgs(task="stack", demos=args.demos, episodes=max(args.episodes, 1),  # 0: no closed loop
                          cache_dir=args.cache_dir, data_dir=args.data_dir,
                          smoke=args.smoke, seed=args.seed)
    n_train = bench.demos
    args.oracle_demos = (n_train,) if args.oracle_demos is None else args.oracle_demos
    everything = ensure_demos("stack", max((n_train, *args.oracle_demos)) + bench.val_demos, args.data_dir, image_size=bench.image_px)
    all_state = load_obs(demo_path("stack", args.data_dir, bench.image_px), STATE_KEYS, everything.num_episodes)
    vinn_rows = np.flatnonzero(everything.episode_ids < n_train + bench.val_demos)
    data, state = everything.select(range(n_train + bench.val_demos)), {key: v[vinn_rows] for key, v in all_state.items()}
    offset_a = (state["cubeA_pos"] - state["robot0_eef_pos"])[:, :2]  # (N, 2) m
    offset_b = (state["cubeB_pos"] - state["robot0_eef_pos"])[:, :2]
    train, val = np.flatnonzero(data.episode_ids < n_train), np.flatnonzero(data.episode_ids >= n_train)
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
        k = choose_k(representations["BYOL (VINN's encoder)"], data, train, val)[0]
        result["closed_loop"] = loop = closed_loop_failures(args, bench, data, train, val, byol, k)
        md += (f"\n\n## Where VINN's own episodes fail\n\nVINN (this encoder, k = {k} chosen on the validation demos as "
               f"in run_stack.py) on the first {args.episodes} evaluation seeds, each episode counted at the furthest "
               f"stage it reached, read off the simulator's state: A lifted = more than {100 * LIFTED:.0f} cm above its start; "
               f"over B = within {100 * OVER_B:.0f} cm of B horizontally while lifted; closed at A = the gripper closed within "
               f"{100 * NEAR_A:.0f} cm of A horizontally and at most {100 * AT_A_HEIGHT:.0f} cm above its centre (above A: "
               f"within {100 * NEAR_A:.0f} cm but higher). The gripper command switched {loop['median_gripper_switches']:.0f} "
               f"times per episode (median; the expert {loop['expert_median_gripper_switches']:.0f} times in the validation "
               f"demos). Per-episode evidence: analysis.json.\n\n" +
               markdown_table(["outcome", "episodes"], [[o, str(n)] for o, n in loop["counts"].items()]))
    if args.episodes and args.oracle_demos:
        result["state_oracle"] = oracle = state_oracle(args, bench, everything, state_features(all_state, CUBES))
        md += (f"\n\n## What a perfect encoder would allow\n\nThe same locally weighted regression (softmin, gripper vote, "
               f"k chosen on the {bench.val_demos} validation demos that follow the database) over the privileged state "
               f"instead of images: cube A's and cube B's offsets from the gripper and the finger joints, in cm. Same "
               f"{args.episodes} evaluation seeds, outcomes as above (VINN: its {loop['counts'][OUTCOMES[0]]} stacked).\n\n" +
               markdown_table(["database", "k", "stacked", *OUTCOMES[1:], "gripper switches (median)"],
                              [[f"{n} demos", str(r["k"]), f"{r['successes']}/{args.episodes}", *(str(r["counts"][o]) for o in OUTCOMES[1:]),
                                f"{r['median_gripper_switches']:.0f}"] for n, r in oracle.items()]))
    write_results(args.out, args.name, result, md)
    print(md)
    return result


if __name__ == "__main__":
    import tyro

    main(tyro.cli(Args))
