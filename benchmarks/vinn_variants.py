"""How one trained VINN should act: chunked retrieval and re-querying, closed loop, on a development block.

    python benchmarks/vinn_variants.py --task door --chunks 1 4 8 16 --requery 0 2 3
    # needs runs/door/policies/training0/vinn (python benchmarks/run_door.py); writes runs/vinn_variants/<task>.{json,md}
    python benchmarks/vinn_variants.py --task stack --policy runs/stack/policies/training0/vinn_multiview --name stack_multiview

Every variant keeps the saved VINN's encoder, database and k and changes only how it turns neighbours into actions
(VINNConfig.chunk and requery; chunk 1 is the paper's VINN), so the table isolates the retrieval. All run on the
same seeds of a development block: the test block is for the chosen variant's final run only.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import tyro

from vinn_policy.harness.args import BenchmarkArgs
from vinn_policy.harness.evaluation import evaluate_methods, summarize
from vinn_policy.harness.pipeline import ensure_demos
from vinn_policy.harness.report import success_cell
from vinn_policy.harness.results import environment, markdown_table, one_torch_thread, time_calls, write_results
from vinn_policy.policy import VINNPolicy


@dataclass
class Args:
    task: str = "door"
    policy: str | None = None
    """The trained VINN (default: runs/<task>/policies/training0/vinn, what run_<task>.py saves); a multi-view VINN
    (vinn_multiview) is evaluated with its extra cameras rendered."""
    chunks: tuple[int, ...] = (1, 4, 8, 16)
    requery: tuple[float, ...] = (0.0,)
    """Re-query thresholds tried with every chunk > 1, in typical neighbour distances (0: only when the plan runs out)."""
    episodes: int = 50
    seed: int = 1
    """Development block (>= 1): seeds EVAL_SEED_BASE + 1000 * seed + i."""
    workers: int = 2
    out: str = "runs/vinn_variants"
    name: str | None = None
    """Results file stem and policies folder under --out (default: the task)."""
    smoke: bool = False
    """Seconds: 32 px, short episodes, and (without --policy) a VINN on an untrained encoder over 4 tiny demos (for tests)."""


def smoke_policy(bench: BenchmarkArgs, out: Path) -> Path:
    from vinn_policy.encoder import Encoder

    data = ensure_demos(bench.task, 4, bench.data_dir, image_size=bench.image_px, camera=bench.camera, progress=False)
    policy = VINNPolicy.fit(data.frames, data.actions, data.episode_ids, encoder=Encoder(bench.encoder_config()), k=3,
                            gripper_index=-1, frame_indices=data.frame_indices)
    return policy.save(out / "smoke_vinn")


def extra_cameras(policy: VINNPolicy) -> tuple[str, ...]:
    """The cameras a multi-view policy reads besides the task camera (its views "<camera>_image")."""
    return tuple(view.removesuffix("_image") for view in policy.layout.views[1:]) if policy.layout is not None else ()


def variants(base: VINNPolicy, args: Args) -> dict[str, VINNPolicy]:
    out = {}
    for chunk in args.chunks:
        for requery in args.requery if chunk > 1 else (0.0,):
            name = f"chunk {chunk}" + (f", requery {requery:g}" if requery else "")
            policy = VINNPolicy(base.encoders, base.database, replace(base.config, chunk=chunk, requery=requery or None), base.layout)
            policy.reference = base.reference
            out[name] = policy
    return out


def main(args: Args) -> dict:
    if args.seed < 1:
        raise SystemExit("--seed must be a development block (>= 1): the test block is for frozen final runs only.")
    from vinn_policy.envs import make_env

    bench = BenchmarkArgs(task=args.task, smoke=args.smoke, episodes=args.episodes, seed=args.seed, workers=args.workers,
                          data_dir=f"{args.out}/data" if args.smoke else "data")
    out = Path(args.out) / (args.name or args.task)
    if args.policy:
        path = Path(args.policy)
    else:
        path = smoke_policy(bench, out) if args.smoke else bench.work_dir / "policies" / "training0" / "vinn"
    if not (Path(path) / "config.json").exists():
        raise SystemExit(f"{path} holds no saved VINN: run benchmarks/run_{args.task}.py first, or pass --policy.")
    base = VINNPolicy.load(path)
    if base.layout is not None and base.layout.proprio_keys:
        raise SystemExit(f"{path} has proprioception in its key: vinn_variants.py takes image keys only.")
    policies = variants(base, args)
    paths = {name: str(p.save(out / "policies" / name.replace(", ", "_").replace(" ", ""))) for name, p in policies.items()}
    make = functools.partial(make_env, args.task, image_size=bench.image_px, camera=bench.camera, render_mode=None, horizon=bench.horizon,
                             **({"extra_cameras": cameras} if (cameras := extra_cameras(base)) else {}))
    summary = summarize(evaluate_methods(make, paths, bench.eval_seeds(), args.workers), reference=next(iter(paths)))
    image = np.zeros((bench.image_px, bench.image_px, 3), np.uint8)
    obs = {view: image for view in (base.layout.views if base.layout is not None else (base.config.image_key,))}
    latency = {}
    with one_torch_thread():  # as in the evaluation's workers (see harness.benchmark.act_latency)
        for name, policy in policies.items():  # over whole plans: the mean amortises a query over its chunk, the p99 is a query step
            policy.reset()
            latency[name] = time_calls(lambda p=policy: p.act(obs), repeats=max(32, 2 * max(args.chunks)), rounds=5)
    rows = []
    for name in policies:
        paired = summary["paired"].get(name)
        rows.append([name, success_cell(summary["methods"][name]), f"{latency[name]['mean_ms']:.1f}", f"{latency[name]['p99_ms']:.1f}",
                     f"{paired['holm_p']:.3g} ({paired['only_a']} / {paired['only_b']})" if paired else "–"])
    md = [f"# VINN variants on {args.task}\n",
          f"`python benchmarks/vinn_variants.py --task {args.task}{f' --name {args.name}' if args.name else ''} --chunks {' '.join(map(str, args.chunks))} --requery "
          f"{' '.join(f'{r:g}' for r in args.requery)} --seed {args.seed}{f' --policy {args.policy}' if args.policy else ''}` · the saved VINN `{path}` (k = {base.config.k}) · "
          f"{args.episodes} episodes each on development block {args.seed}. Paired against the first variant (exact paired test, McNemar with one training; "
          "Holm-corrected; in brackets the episodes only it / only this variant succeeded).\n",
          markdown_table(["variant", "success [Wilson 95%]", "act() mean ms", "act() p99 ms", f"vs {next(iter(paths))}: Holm p"], rows)]
    result = {"args": asdict(args), "environment": environment(), "policy": str(path), "k": base.config.k, "summary": summary,
              "act_latency_ms": latency}
    write_results(Path(args.out), args.name or args.task, result, "\n".join(md) + "\n")
    print("\n".join(md))
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
