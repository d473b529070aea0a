"""Does Door-v1 need vision? Blind replay and the open-loop baseline against the scripted expert.

    python benchmarks/door_vision.py                          # writes runs/door_vision/door_vision.{json,md}
    python benchmarks/door_vision.py --out benchmarks/results # refreshes the committed copy
    python benchmarks/door_vision.py --smoke

On the development block (seeds 1_000_000 + 1000 * block + i, block >= 1; never the test block 0) it measures
the open-loop baseline (fit on the training demos: it replays the demo whose first frame is nearest), single
demos' actions replayed blind, and the variation between episodes (handle position, door yaw, arm start);
and the scripted expert on demonstration seeds 0.. with the collection noise.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass

import numpy as np
import tyro
from vinn_policy.demos.collect import block_seeds, check_development_block
from vinn_policy.demos.experts import make_expert
from vinn_policy.envs import make_env

from vinn_policy.baselines import OpenLoopPolicy
from vinn_policy.harness.pipeline import ensure_demos
from vinn_policy.harness.results import environment, markdown_table, write_results
from vinn_policy.harness.rollout import rollouts


@dataclass
class Args:
    block: int = 1
    """Evaluation seed block (>= 1: development; 0 is the test block and is refused)."""
    episodes: int = 50
    """Evaluation seeds per policy."""
    demos: int = 60
    """Demonstrations in the cache (pipeline.ensure_demos: data/door-v1_<size>px.hdf5); the first train_demos train."""
    train_demos: int = 50
    """Demonstrations the open-loop baseline is fit on (the first of the cached file)."""
    replayed_demos: int = 5
    """Demonstrations replayed blind, each on every evaluation seed (demo 0 is the headline)."""
    expert_seeds: int = 100
    """Seeds 0.. for the scripted expert's success rate."""
    noise: float = 0.1
    """Action noise of the expert's run and of the demonstrations (demos.collect)."""
    variation_resets: int = 100
    """Resets (from the development block) for the spread of handle, door yaw and arm start."""
    data_dir: str = "data"
    image_size: int = 84
    workers: int = 2
    out: str = "runs/door_vision"
    """Report folder; --out benchmarks/results refreshes the committed copy."""
    name: str = "door_vision"
    smoke: bool = False
    """Tiny run (2 demos, 2 seeds each) for tests; pass a temporary --data-dir to keep data/ untouched."""

    def __post_init__(self) -> None:
        check_development_block(self.block)


def blind_expert():
    """The door expert with camera rendering off: it steers by the privileged state alone."""
    expert = make_expert("door")
    expert.uses_images = False
    return expert


def door_yaw(env) -> float:
    """The door's placement yaw (rad) from its root body's quaternion."""
    rs = env.unwrapped._rs
    w, _, _, z = rs.sim.model.body_quat[rs.sim.model.body_name2id(rs.door.root_body)]
    return float(2 * np.arctan2(z, w))


def variation(seeds: range, image_size: int) -> dict:
    """Spread of the initial handle (lever tip) position, door yaw and hand position over resets."""
    env = make_env("door", image_size=image_size, privileged=True)
    env.unwrapped.set_camera_obs(False)
    handle, yaw, eef = [], [], []
    try:
        for s in seeds:
            obs, _ = env.reset(seed=s)
            handle.append(obs["handle_pos"][:2])
            yaw.append(door_yaw(env))
            eef.append(obs["robot0_eef_pos"])
    finally:
        env.close()

    def spread(x):
        x = np.asarray(x, np.float64)
        return {"std": x.std(0).tolist(), "min": x.min(0).tolist(), "max": x.max(0).tolist()}

    return {"resets": len(seeds), "handle_xy_m": spread(handle), "door_yaw_rad": spread(yaw), "eef_start_m": spread(eef)}


def rate(episodes) -> dict:
    ok = [bool(e.success) for e in episodes]
    return {"episodes": len(ok), "successes": int(sum(ok)), "success_rate": float(np.mean(ok))}


def main(args: Args) -> dict:
    if args.smoke:
        args.episodes, args.demos, args.train_demos, args.replayed_demos, args.expert_seeds, args.variation_resets = 2, 2, 2, 1, 2, 3
    t0 = time.perf_counter()
    seeds = block_seeds(args.block, args.episodes)
    make = functools.partial(make_env, "door", image_size=args.image_size)
    demos = ensure_demos("door", max(args.demos, args.train_demos, args.replayed_demos), args.data_dir, noise=args.noise,
                         image_size=args.image_size, workers=args.workers, progress=False)
    ids = list(dict.fromkeys(demos.episode_ids.tolist()))
    train = np.isin(demos.episode_ids, ids[: args.train_demos])
    open_loop = OpenLoopPolicy.fit(demos.frames[train], demos.actions[train], demos.episode_ids[train])
    ol = rate(rollouts(make, lambda: open_loop, seeds, workers=1))
    print("open-loop", ol, flush=True)
    blind = []
    for e in ids[: args.replayed_demos]:  # open-loop over this one demo: its actions replayed blind
        one = demos.episode_ids == e
        replay = functools.partial(OpenLoopPolicy.fit, demos.frames[one], demos.actions[one], demos.episode_ids[one])
        blind.append(rate(rollouts(make, replay, seeds, workers=args.workers)))
        print("blind replay of demo", e, blind[-1], flush=True)
    make_priv = functools.partial(make_env, "door", image_size=args.image_size, privileged=True)
    expert = rate(rollouts(make_priv, blind_expert, range(args.expert_seeds), workers=args.workers,
                           action_noise=args.noise))
    print("expert", expert, flush=True)
    spread = variation(seeds if args.smoke else range(seeds.start, seeds.start + args.variation_resets), args.image_size)
    blind_mean = float(np.mean([b["success_rate"] for b in blind]))
    data = {"args": asdict(args), "environment": environment(), "seeds": f"{seeds.start}..{seeds.stop - 1} (block {args.block})",
            "open_loop": ol, "blind_replay": {"demo_0": blind[0], "per_demo": blind, "mean": blind_mean},
            "expert": {**expert, "seeds": f"0..{args.expert_seeds - 1}", "noise": args.noise}, "variation": spread,
            "seconds": time.perf_counter() - t0}
    h, y, eef = spread["handle_xy_m"], spread["door_yaw_rad"], spread["eef_start_m"]
    table = markdown_table(
        ["measure", "value", "target"],
        [[f"open-loop success (n={args.episodes}, block {args.block})", f"{ol['success_rate']:.0%}", "<= 30%"],
         [f"blind replay of demo 0 (n={args.episodes})", f"{blind[0]['success_rate']:.0%}", "<= 20%"],
         [f"blind replay, mean over demos 0..{args.replayed_demos - 1}", f"{blind_mean:.0%}", ""],
         [f"scripted expert (seeds 0..{args.expert_seeds - 1}, noise {args.noise})", f"{expert['success_rate']:.0%}", ">= 95%"],
         ["handle x / y std (range), cm", " / ".join(f"{100 * s:.1f} ({100 * lo:.0f}..{100 * hi:.0f})" for s, lo, hi in
                                                   zip(h["std"], h["min"], h["max"], strict=True)), ""],
         ["door yaw std (range), rad", f"{y['std']:.3f} ({y['min']:.2f}..{y['max']:.2f})", ""],
         ["hand start x / y / z std, cm", " / ".join(f"{100 * s:.1f}" for s in eef["std"]), ""]])
    cmd = ("python benchmarks/door_vision.py" + (" --smoke" if args.smoke else "") + (f" --block {args.block}" if args.block != 1 else "")
           + (f" --name {args.name}" if args.name != "door_vision" else "") + (f" --out {args.out}" if args.out != "runs/door_vision" else ""))
    md = (f"# Does Door-v1 need vision? ({data['environment']['date']})\n\n`{cmd}`\n\nDevelopment seeds {data['seeds']}; "
          f"open-loop fit on {args.train_demos} demos (noise {args.noise}, {args.image_size} px). Variation over "
          f"{spread['resets']} resets.\n\n" + table + "\n")
    write_results(args.out, args.name, data, md)
    print(md)
    return data


if __name__ == "__main__":
    main(tyro.cli(Args))
