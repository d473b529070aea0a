"""Scripted experts and simulator speed: success over many seeds, env steps/s, demo collection time.

    python benchmarks/experts.py              # 100 seeds per task; writes runs/experts/experts.{json,md}
    python benchmarks/experts.py --out benchmarks/results   # refreshes the committed table
    python benchmarks/experts.py --smoke
"""

from __future__ import annotations

import functools
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import tyro
from vinn_policy.demos.collect import CollectArgs, collect
from vinn_policy.demos.experts import make_expert
from vinn_policy.envs import HORIZONS, make_env

from vinn_policy.harness.results import environment, markdown_table, write_results
from vinn_policy.harness.rollout import rollouts


@dataclass
class Args:
    tasks: tuple[str, ...] = ("door", "push", "stack")
    seeds: int = 100
    """Episodes per task and noise level for the success rate."""
    noise: float = 0.1
    """Collection noise also evaluated (labels stay clean; see demos.collect)."""
    speed_episodes: int = 12
    """Episodes per worker count for the steps/s measurement."""
    demos: int = 50
    """Demonstrations collected (2 workers) for the collection-time figure."""
    image_size: int = 84
    out: str = "runs/experts"
    """Report folder; --out benchmarks/results refreshes the committed experts.md."""
    name: str = "experts"
    smoke: bool = False


def success_rate(task: str, seeds: int, noise: float, image_size: int) -> dict:
    make = functools.partial(make_env, task, image_size=image_size, privileged=True)  # experts steer by object state
    eps = list(rollouts(make, functools.partial(make_expert, task), range(seeds), workers=2, action_noise=noise))
    lengths = [e.steps for e in eps if e.success]
    return {"noise": noise, "episodes": seeds, "successes": sum(e.success for e in eps),
            "success_rate": float(np.mean([e.success for e in eps])), "failed_seeds": [e.seed for e in eps if not e.success],
            "mean_length": float(np.mean(lengths)) if lengths else None, "max_length": max(lengths, default=None)}


def steps_per_second(task: str, workers: int, episodes: int, image_size: int) -> float:
    """Steady-state env steps/s with camera and expert (process start-up and the first episodes excluded)."""
    make = functools.partial(make_env, task, image_size=image_size, privileged=True)
    arrivals = []
    for e in rollouts(make, functools.partial(make_expert, task), range(500, 500 + episodes), workers=workers):
        arrivals.append((time.perf_counter(), e.steps))
    skip = workers  # the first result of each worker includes its start-up
    return sum(s for _, s in arrivals[skip:]) / (arrivals[-1][0] - arrivals[skip - 1][0])


def door_needs_vision(out: Path) -> str:
    """Door-v1's vision check (door_vision.py's results in the same folder) beside the expert: open-loop, one demo
    replayed blind, the expert, and the spread of door and hand that makes the first two fail."""
    runs = sorted(out.glob("door_vision*.json"))
    if not runs:
        return ""
    rows = []
    for path in runs:
        r = json.loads(path.read_text())
        h, y, eef = r["variation"]["handle_xy_m"], r["variation"]["door_yaw_rad"], r["variation"]["eef_start_m"]
        rows.append([r["seeds"], f"{r['open_loop']['success_rate']:.0%}", f"{r['blind_replay']['demo_0']['success_rate']:.0%} "
                     f"({r['blind_replay']['mean']:.0%})", f"{r['expert']['success_rate']:.0%}",
                     " / ".join(f"{100 * v:.1f}" for v in h["std"]), f"{y['std']:.3f}", " / ".join(f"{100 * v:.1f}" for v in eef["std"])])
    return ("\n\n## Door-v1 needs vision\n\nFrom `python benchmarks/door_vision.py` ([door_vision.md](door_vision.md)): "
            "the open-loop baseline (50 demos, replays the one whose first frame is nearest), demo 0 replayed blind (mean "
            "over demos 0-4), the expert with noise 0.1 on seeds 0-99, and the spread over 100 resets (std). Targets: "
            "open-loop <= 30%, blind <= 20%, expert >= 95%.\n\n" + markdown_table(
                ["evaluation seeds", "open-loop", "blind replay", "expert", "handle x / y std (cm)", "door yaw std (rad)",
                 "hand start x / y / z std (cm)"], rows))


def main(args: Args) -> dict:
    if args.smoke:
        args.seeds, args.speed_episodes, args.demos = 4, 4, 2
    rows = {}
    for task in args.tasks:
        t0 = time.perf_counter()
        clean = success_rate(task, args.seeds, 0.0, args.image_size)
        noisy = success_rate(task, args.seeds, args.noise, args.image_size)
        speed = {w: steps_per_second(task, w, args.speed_episodes, args.image_size) for w in (1, 2)}
        with tempfile.TemporaryDirectory() as tmp:
            report = collect(CollectArgs(task=task, episodes=args.demos, out=f"{tmp}/{task}.hdf5", noise=args.noise,
                                         image_size=args.image_size, workers=2), progress=False)
        rows[task] = {"horizon": HORIZONS[task], "no_noise": clean, "with_noise": noisy,
                      "steps_per_s": {"1_process": speed[1], "2_processes": speed[2]},
                      "collect": {"demos": report.kept, "failures": report.failures, "seconds": report.seconds},
                      "seconds": time.perf_counter() - t0}
        print(task, rows[task], flush=True)
    data = {"args": asdict(args), "environment": environment(), "tasks": rows}
    table = markdown_table(
        ["task", f"expert success (noise 0, n={args.seeds})", f"success (noise {args.noise})", "mean / max steps",
         "horizon", "steps/s 1 proc", "steps/s 2 procs", f"collect {args.demos} demos (s)"],
        [[t, f"{r['no_noise']['success_rate']:.0%}", f"{r['with_noise']['success_rate']:.0%}",
          f"{r['no_noise']['mean_length']:.0f} / {r['no_noise']['max_length']}", r["horizon"],
          f"{r['steps_per_s']['1_process']:.1f}", f"{r['steps_per_s']['2_processes']:.1f}", f"{r['collect']['seconds']:.0f}"]
         for t, r in rows.items()])
    md = (f"# Scripted experts and simulator speed ({data['environment']['date']})\n\n"
          f"{args.image_size} px camera observations, fast rendering, Panda OSC_POSITION at 20 Hz. Steps/s are "
          "steady-state (process start-up excluded) with the expert acting. Command: "
          f"`python benchmarks/experts.py --seeds {args.seeds} --out {args.out}`. The experts are memoryless (v1 tasks); "
          "door's placement spread and what open-loop and one demo replayed blind achieve on it: "
          "[door_vision.md](door_vision.md); VINN's regression over the true state following these experts: "
          "[state_oracle/](state_oracle/).\n\n" + table + door_needs_vision(Path(args.out)))
    write_results(args.out, args.name, data, md)
    print(md)
    return data


if __name__ == "__main__":
    main(tyro.cli(Args))
