"""Collect scripted-expert demonstrations into a robomimic-layout HDF5 file.

    python -m vinn_policy.demos.collect --task door --episodes 50            # -> data/door.hdf5
    vinn-collect --task push --episodes 20 --append                          # add 20 more

Only successful episodes are kept (failures are counted and reported). Episode i uses seed `seed + i`
(appending continues after the file's largest seed; each failure uses one more). Demonstration seeds stay in
[0, EVAL_SEED_BASE): a collection whose seeds could reach the evaluation range is refused before it starts.
Files record the privileged simulator state (object positions) beside the images, for analyses and state oracles.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import tyro
from tqdm.auto import tqdm
from vinn_policy.demos.dataset import load_demos, validate_file, write_demos
from vinn_policy.demos.experts import EXPERTS, make_expert
from vinn_policy.envs import env_id, make_env, resolve_camera, task_variation

from vinn_policy.harness.rollout import Episode, rollouts

EVAL_SEED_BASE = 1_000_000
"""Evaluation seeds start here; demonstration seeds stay below it."""
BLOCK_SIZE = 1000
"""Evaluation seeds come in blocks: block 0 is the test block, 1, 2, ... development blocks (../PROTOCOL)."""


def block_seeds(block: int, episodes: int) -> range:
    """The first `episodes` seeds of evaluation block `block`: EVAL_SEED_BASE + BLOCK_SIZE * block + i."""
    first = EVAL_SEED_BASE + BLOCK_SIZE * block
    return range(first, first + episodes)


def check_development_block(block: int) -> None:
    """Refuse block 0 for what informs design (analyses, checks): the test block is for frozen final runs."""
    if block < 1:
        raise ValueError(f"--block must be >= 1 (development); block 0 is the test block. Got {block}.")


@dataclass
class CollectArgs:
    task: str = "door"
    """door, push or stack."""
    episodes: int = 50
    """Successful demonstrations to collect."""
    out: str | None = None
    """Output file (default data/<task>.hdf5)."""
    seed: int = 0
    """Seed of the first episode; episode i uses seed + i."""
    noise: float = 0.1
    """Std of Gaussian noise on the executed translation (labels stay the expert's intended action)."""
    image_size: int = 84
    camera: str | None = None
    """Camera of the image observations (default: the task's, e.g. agentview; robot0_eye_in_hand is the wrist)."""
    extra_cameras: tuple[str, ...] = ()
    """More cameras recorded beside it, each as obs/<camera>_image (for multi-view policies)."""
    workers: int = 2
    append: bool = False
    """Add to an existing file instead of refusing to overwrite it."""
    max_failures: int | None = None
    """Give up after this many failed episodes (default: as many as requested episodes)."""


@dataclass
class CollectReport:
    path: Path
    kept: int
    failures: int
    seconds: float
    total_demos: int


def check_seed_range(first: int, episodes: int, max_failures: int, file_seed: int | None = None) -> None:
    """Refuse a collection whose seeds could reach the evaluation seeds, before any episode runs.

    The loop in collect() uses at most `episodes + max_failures` consecutive seeds from `first`: each batch
    runs the episodes still missing, and another batch starts only while failures <= max_failures.
    `file_seed`: the largest seed already in the file appended to, if any (for the message).

    Raises:
        ValueError: naming the seeds it could need, the allowed range and what to change.
    """
    last = first + episodes + max_failures - 1
    if last < EVAL_SEED_BASE:
        return
    where = f"the file's demos already reach seed {file_seed}" if file_seed is not None else f"--seed is {first}"
    raise ValueError(f"Collecting {episodes} demos with up to {max_failures} failures may use seeds {first}..{last}, "
                     f"but demonstration seeds must stay in [0, {EVAL_SEED_BASE}) (EVAL_SEED_BASE: evaluation seeds start "
                     f"there); {where}. Lower --episodes or --max-failures, start from a lower --seed, or collect into "
                     "a new file.")


def collect(args: CollectArgs, progress: bool = True) -> CollectReport:
    """Run the expert on consecutive seeds until `args.episodes` successes; write them to the file."""
    if args.episodes < 1:
        raise ValueError(f"episodes must be >= 1; got {args.episodes}.")
    camera = resolve_camera(args.task, args.camera)
    image_key = f"{camera}_image"  # robomimic's name for the camera's images
    path = Path(args.out or f"data/{args.task}.hdf5")
    env_args = {
        "env_name": env_id(args.task),
        "type": "vinn_policy",
        # explicit: a file outlives the task's default (extra cameras only when there are some: older files append)
        "env_kwargs": {"image_size": args.image_size, "camera": camera, **({"extra_cameras": list(args.extra_cameras)} if args.extra_cameras else {})},
        "image_key": image_key,
        "action_noise": args.noise,
        "expert": EXPERTS[args.task].name(),  # demos made by another expert version are not reused
        "variation": task_variation(args.task),  # nor demos drawn from another placement distribution
    }
    max_failures = args.max_failures if args.max_failures is not None else args.episodes
    if args.seed < 0 or max_failures < 0:
        raise ValueError(f"seed and max_failures must be >= 0; got seed={args.seed}, max_failures={max_failures}.")
    next_seed, file_seed = args.seed, None
    if path.exists() and args.append:
        file_seed = max((s for s in load_demos(path).seeds if s is not None), default=None)
        next_seed = max(next_seed, -1 if file_seed is None else file_seed + 1)
    elif path.exists():
        raise FileExistsError(f"{path} exists; pass --append to add demos or remove it first.")
    check_seed_range(next_seed, args.episodes, max_failures, file_seed)

    # privileged: the expert steers by object positions, and the files keep them (benchmarks/stack_analysis.py).
    make = functools.partial(make_env, args.task, image_size=args.image_size, render_mode=None, camera=camera,
                             extra_cameras=tuple(args.extra_cameras), privileged=True)
    kept: list[Episode] = []
    failures = 0
    start = time.perf_counter()
    bar = tqdm(total=args.episodes, desc=f"collect {args.task}", unit="demo", disable=not progress)
    while len(kept) < args.episodes:
        seeds = range(next_seed, next_seed + args.episodes - len(kept))
        next_seed += len(seeds)
        for episode in rollouts(make, functools.partial(make_expert, args.task), seeds, args.workers,
                                action_noise=args.noise, record=True):
            if episode.success:
                episode.obs[image_key] = episode.obs.pop("image")
                kept.append(episode)
                bar.update(1)
            else:
                failures += 1
            bar.set_postfix(failures=failures)
        if failures > max_failures:
            bar.close()
            raise RuntimeError(f"The {args.task} expert failed {failures} times for {len(kept)} successes; giving up "
                               f"(raise --max-failures or lower --noise).")
    bar.close()
    total = write_demos(path, kept, env_args, append=args.append)
    return CollectReport(path, len(kept), failures, time.perf_counter() - start, total)


def main(args: CollectArgs) -> CollectReport:
    report = collect(args)
    summary = validate_file(report.path)
    print(json.dumps({"file": str(report.path), "kept": report.kept, "failures": report.failures,
                      "seconds": round(report.seconds, 1), "demos_in_file": summary["demos"],
                      "frames_in_file": summary["frames"]}))
    return report


def cli() -> None:
    main(tyro.cli(CollectArgs))


if __name__ == "__main__":
    cli()
