"""The state oracle: VINN's locally weighted regression over the true simulator state, in closed loop.

    python benchmarks/state_oracle.py --task stack                 # 50 demos, development block (seeds 1_001_000...)
    python benchmarks/state_oracle.py --task door --out benchmarks/results/state_oracle   # the committed copy

The oracle (vinn_policy.baselines.StateKNNPolicy) is VINN with a perfect encoder: the same k nearest neighbours,
softmin weights and gripper vote, over the objects' offsets from the gripper and the finger joints instead of
image embeddings, with k chosen on the validation demonstrations. If it succeeds, the expert is imitable by a
memoryless policy from these demonstrations, and any gap between it and VINN is the representation's.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np
import tyro
from vinn_policy.demos.collect import block_seeds
from vinn_policy.demos.dataset import load_obs
from vinn_policy.envs import make_env

from vinn_policy.actions import GRIPPER_INDEX
from vinn_policy.baselines import StateKNNPolicy, state_features
from vinn_policy.baselines.state_oracle import last_joint_angles
from vinn_policy.harness.evaluation import wilson_interval
from vinn_policy.harness.pipeline import demo_path, ensure_demos
from vinn_policy.harness.results import environment, markdown_table, write_results
from vinn_policy.harness.rollout import rollouts
from vinn_policy.harness.training import choose_k

OBJECTS = {"door": ("handle_pos", "door_pos"), "push": ("cube_pos", "goal_pos"), "stack": ("cubeA_pos", "cubeB_pos"),
           "push_around": ("cube_pos", "goal_pos", "obstacle_pos")}
"""The privileged positions whose offsets from the gripper make each task's state."""
JOINTS = {"door": ("handle_qpos", "hinge_qpos")}
"""Object joint angles in the state too: the door expert's mode is the lever's and the hinge's angle."""


@dataclass
class Args:
    task: str = "stack"
    demos: int = 50
    """Training demonstrations (the database); the next 20% (at least 2) choose k."""
    episodes: int = 50
    seed: int = 1
    """Evaluation block: seeds EVAL_SEED_BASE + 1000 * seed + i. 1+: development blocks; 0 is the test block,
    for frozen final runs only."""
    k: int | None = None
    """Neighbours; default: chosen on the validation demos (offline error)."""
    image_size: int = 84
    """Of the demo file shared with the benchmark (the oracle itself ignores the images)."""
    data_dir: str = "data"
    workers: int = 2
    out: str = "runs/state_oracle"
    """Report folder (writes state_oracle_<task>.{json,md})."""
    smoke: bool = False


def main(args: Args) -> dict:
    if args.task not in OBJECTS:
        raise SystemExit(f"--task must be one of {sorted(OBJECTS)}; got {args.task!r}.")
    if args.smoke:
        args.demos, args.episodes, args.image_size = 4, 2, 32
    val_demos = max(2, round(0.2 * args.demos))
    data = ensure_demos(args.task, args.demos + val_demos, args.data_dir, image_size=args.image_size)
    joints = JOINTS.get(args.task, ())
    keys = ("robot0_eef_pos", *OBJECTS[args.task], "robot0_gripper_qpos", *joints)
    obs = load_obs(demo_path(args.task, args.data_dir, args.image_size), keys, max_episodes=args.demos + val_demos)
    features = state_features(obs, OBJECTS[args.task], joints)  # (N, 3 * objects + 2 + joints), rows as data's
    train = np.flatnonzero(data.episode_ids < args.demos)
    val = np.flatnonzero(data.episode_ids >= args.demos)
    k, curve = choose_k(features, data, train, val)
    k = args.k or k
    policy = functools.partial(StateKNNPolicy, features[train], data.actions[train], data.episode_ids[train], k,
                               OBJECTS[args.task], GRIPPER_INDEX, joints)
    seeds = list(block_seeds(args.seed, args.episodes))
    make = functools.partial(make_env, args.task, image_size=args.image_size, privileged=True)
    # each step's object joint angles (rad): how far a failed episode got
    episodes = list(rollouts(make, policy, seeds, args.workers, trace=last_joint_angles if joints else None))
    successes = sum(e.success for e in episodes)
    result = {"args": asdict(args), "environment": environment(), "block": "test" if args.seed == 0 else "development",
              "objects": OBJECTS[args.task], "joints": joints, "k": k, "k_curve_val": curve, "episodes": len(episodes), "successes": successes,
              "success_rate": successes / len(episodes), "wilson_95": wilson_interval(successes, len(episodes)),
              "failed_seeds": [e.seed for e in episodes if not e.success],
              "failures": [{"seed": e.seed, "steps": e.steps, **({f"max_{j}": max(t[j] for t in e.trace) for j in joints})}
                           for e in episodes if not e.success],
              "mean_steps": float(np.mean([e.steps for e in episodes]))}
    low, high = result["wilson_95"]
    md = (f"# State oracle: {args.task}\n\n"
          f"`python benchmarks/state_oracle.py --task {args.task} --demos {args.demos} --episodes {args.episodes} --seed {args.seed} "
          f"--image-size {args.image_size} --out {args.out}`"
          f" ({result['environment']['date']}). VINN's regression (k nearest by L2, softmin weights, gripper vote) over "
          f"{', '.join(OBJECTS[args.task])} relative to the gripper, the finger joints"
          f"{''.join(f', {j}' for j in joints)}, {args.demos} demos, k = {k} chosen "
          f"on {val_demos} validation demos, {result['block']} block.\n\n"
          + markdown_table(["episodes", "successes", "success", "Wilson 95%", "mean steps"],
                           [[len(episodes), successes, f"{result['success_rate']:.0%}", f"[{low:.0%}, {high:.0%}]",
                             round(result["mean_steps"], 1)]]) + "\n")
    if joints and result["failures"]:
        md += ("\nFailed episodes, with the largest value each object joint reached (rad):\n\n" + markdown_table(
            ["seed", "steps", *[f"max {j}" for j in joints]],
            [[f["seed"], f["steps"], *[f"{f[f'max_{j}']:.2f}" for j in joints]] for f in result["failures"]]) + "\n")
    write_results(args.out, f"state_oracle_{args.task}", result, md)
    print(md)
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
