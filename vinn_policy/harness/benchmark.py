"""The closed-loop benchmark behind benchmarks/run_<task>.py: demos -> encoder -> policies -> evaluation -> report.

Every stage is cached or saved as an artefact, so a crash never corrupts what an earlier run produced:
demonstrations in data/, BYOL encoders in runs/cache/ (keyed by data + config), policies under the run
directory. All methods are evaluated on the same held-out env seeds (disjoint from demonstration seeds).
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from vinn_policy.demos.dataset import Demos

from vinn_policy.actions import GRIPPER_INDEX
from vinn_policy.artefact import artefact_digest, atomic_write_text
from vinn_policy.baselines import load_policy
from vinn_policy.diagnostics import diagnose
from vinn_policy.encoder import Encoder
from vinn_policy.harness.args import LEARNED, METHODS, OPTIONAL_METHODS, BenchmarkArgs  # noqa: F401  (the scripts' import)
from vinn_policy.harness.evaluation import evaluate_methods, summarize
from vinn_policy.harness.pipeline import ensure_demos, frames_digest
from vinn_policy.harness.results import environment, host_speed, one_torch_thread, source_revision, time_calls
from vinn_policy.harness.rollout import run_episode, run_jobs
from vinn_policy.harness.training import build_encoder, train_policies
from vinn_policy.harness.video import NeighbourStrip, write_mp4
from vinn_policy.policy import VINNPolicy


class Stages:
    """Wall time of each named stage; a failing stage is reported by name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def run(self, name: str, fn, *args, **kwargs):
        t = time.perf_counter()
        print(f"[{name}] ...", flush=True)
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            raise RuntimeError(f"stage '{name}' failed: {type(e).__name__}: {e}") from e
        finally:
            self.seconds[name] = round(time.perf_counter() - t, 1)
            print(f"[{name}] {self.seconds[name]:.0f} s", flush=True)


def act_latency(paths: dict[str, str], obs: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean act() milliseconds of each policy over 48 consecutive calls on one observation, the median of 5 such
    rounds, on one torch thread as in the evaluation's workers: on two, a 2-core host running two trainings beside
    it stalled a kNN act() at ~0.7 s, on one it took 12-16 ms. A chunked VINN queries once per chunk (4, 8 or
    16 steps), so this is its cost per step, amortised, where a median over calls would show the free steps only."""
    out = {}
    with one_torch_thread():
        for name, path in paths.items():
            policy = load_policy(path)
            policy.reset(seed=0)
            out[name] = time_calls(lambda p=policy: p.act(obs), repeats=48, rounds=5)["mean_ms"]
    return out


def record_videos(args: BenchmarkArgs, paths: dict[str, str], data: Demos, rows_by_key: dict, video_dir: Path) -> list[dict]:
    """Re-run the first `videos` seeds of each method with rendering, in `workers` processes; check they
    reproduce the evaluation. VINN's frames carry a strip of its nearest demonstration frames."""
    make = env_maker(args, render=True)  # every camera of the run: the videos of all methods come from one env
    jobs = [(name, functools.partial(load_policy, path), seed) for name, path in paths.items() for seed in args.eval_seeds()[: args.videos]]
    vinn = any(name.startswith("vinn") for name in paths)
    annotate = NeighbourStrip(data.frames[data.episode_ids < args.demos]) if vinn else None  # the databases' frames, in row order
    written = []
    for (name, _, seed), episode in zip(jobs, run_jobs(make, jobs, args.workers, render=True, annotate=annotate), strict=True):
        file = write_mp4(video_dir / f"{name}_seed{seed}.mp4", episode.frames)
        ref = rows_by_key.get((name, seed))
        reproduced = ref is None or (ref["success"] == episode.success and ref["steps"] == episode.steps)
        written.append({"method": name, "seed": seed, "file": str(file), "success": episode.success,
                        "steps": episode.steps, "reproduces_evaluation": reproduced})
    return written


def policy_dir(work_dir: Path, training: int) -> Path:
    """Where training `training` (its --train-seeds index) saves its policies."""
    return work_dir / "policies" / f"training{training}"


def env_maker(args: BenchmarkArgs, method: str | None = None, render: bool = False) -> functools.partial:
    """make_env for this run's task, rendering the cameras `method` reads (all of the run's with None)."""
    from vinn_policy.envs import make_env

    return functools.partial(make_env, args.task, **args.env_kwargs(render=render, method=method))


def evaluate_each_in_its_env(args: BenchmarkArgs, paths: dict[str, str], provenance: bool = False) -> list[dict]:
    """evaluate_methods with each method in an env that renders only the cameras it reads (env_kwargs(method=...)):
    single-camera methods cost no extra rendering and share their cached rows with single-camera runs."""
    groups: dict[str, dict[str, str]] = {}
    for name, path in paths.items():
        groups.setdefault(json.dumps(args.env_kwargs(method=name), sort_keys=True), {})[name] = path
    rows = [row for group in groups.values()
            for row in evaluate_methods(env_maker(args, next(iter(group))), group, args.eval_seeds(), args.workers,
                                        provenance=provenance, cache_dir=args.cache_dir)]
    order = list(paths)
    return sorted(rows, key=lambda r: order.index(r["method"]))  # stable: each method's seeds stay in order


def train_and_evaluate(args: BenchmarkArgs, stages: Stages, data: Demos,
                       training: int) -> tuple[dict[str, Any], list[dict], dict[str, str], Encoder]:
    """One training of every method (the untrained ones only in training 0), evaluated on the episode seeds.
    Returns the training's record for results.json, its episode rows tagged with `training`, its policies' paths
    and VINN's encoder."""
    label = f" {training + 1}/{args.train_seeds}" if args.train_seeds > 1 else ""
    methods = args.methods if training == 0 else tuple(m for m in args.methods if m in LEARNED)
    encoder, encoder_info = stages.run(f"encoder{label}", build_encoder, args, data.frames[data.episode_ids < args.demos], training)
    trained = stages.run(f"policies{label}", train_policies, args, data, args.demos, encoder, policy_dir(args.work_dir, training),
                         seed=training, methods=methods)
    rows = stages.run(f"evaluation{label}", evaluate_each_in_its_env, args, trained["paths"], provenance=args.provenance)
    for r in rows:
        r["training"] = training
        if "provenance" in r:  # per-step neighbour lists are large: one file per episode, not results.json
            path = args.work_dir / "provenance" / f"training{training}" / f"{r['method']}_seed{r['seed']}.json"
            atomic_write_text(path, json.dumps(r.pop("provenance")))
            r["provenance_file"] = str(path)
    record = {**{k: v for k, v in trained.items() if k != "paths"},
              "encoder": {"kind": args.encoder, **{k: v for k, v in encoder_info.items() if k != "losses"},
                          "byol_losses": encoder_info.get("losses"), "config": asdict(encoder.config)},
              "policies": {name: {"path": path, "sha256": artefact_digest(path)} for name, path in trained["paths"].items()}}
    return record, rows, trained["paths"], encoder


def run(args: BenchmarkArgs) -> dict[str, Any]:
    """The whole benchmark; returns (and writes) the results. A training recorded by an earlier run with the same
    fingerprint (report_dir/trainings/training<i>.json) is reused rather than trained again: see `TrainingRecords`."""
    from vinn_policy.harness.report import write_report

    speed = host_speed()  # before the clock starts: the probe is not part of the run's wall time
    start = time.perf_counter()
    stages = Stages()
    run_dir, out = args.work_dir, args.report_dir
    data = stages.run("demonstrations", ensure_demos, args.task, args.demos + args.val_demos, args.data_dir,
                      image_size=args.image_px, camera=args.camera, extra_cameras=args.extra_cameras, obs_keys=args.obs_keys)
    make = env_maker(args, "vinn")  # the sweeps' VINNs read the task camera only
    records = TrainingRecords(args, data, speed)
    trainings, rows, extras, encoder = [], [], {}, None
    for training in range(args.train_seeds):
        saved = records.load(training)
        if saved is None:
            began, before = time.perf_counter(), dict(stages.seconds)
            record, found, paths, found_encoder = train_and_evaluate(args, stages, data, training)
            if training == 0:  # diagnostics, latency and videos use the first training's policies
                encoder = found_encoder
                extras = first_training_extras(args, stages, data, paths, found)
            saved = records.save(training, record, found, extras if training == 0 else {}, time.perf_counter() - began,
                                 {k: v for k, v in stages.seconds.items() if k not in before})
        elif training == 0:
            extras = saved["extras"]
        trainings.append({**saved["record"], "run": saved["run"]})
        rows += saved["episodes"]
    first = trainings[0]
    summary = summarize(rows, challengers=[m for m in args.methods if m in OPTIONAL_METHODS])
    first_rows = [r for r in rows if r["training"] == 0]

    sweeps: dict[str, Any] = {}
    if args.k_sweep or args.demo_sweep:
        encoder = encoder or build_encoder(args, data.frames[data.episode_ids < args.demos], 0)[0]
    if args.k_sweep:
        sweeps["k"] = stages.run("k sweep", _k_sweep, args, data, encoder, run_dir, make)
    if args.demo_sweep:
        sweeps["demos"] = stages.run("demo sweep", _demo_sweep, args, data, encoder, run_dir, make, first, first_rows)
    results = {
        "args": asdict(args), "block": args.block, "environment": {**environment(), "host_speed": speed},
        "demos": {"train": args.demos, "val": args.val_demos, "frames": int(len(data.frames))},
        "fingerprint": records.fingerprint, "trainings": trainings, "summary": summary, **extras, "episodes": rows,
        "sweeps": sweeps, "stage_seconds": stages.seconds, "wall_seconds": round(time.perf_counter() - start, 1),
    }
    write_report(out, results)
    return results


def first_training_extras(args: BenchmarkArgs, stages: Stages, data: Demos, paths: dict[str, str],
                          rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the report shows of the first training only: VINN's assumption diagnostics, act() latency, videos."""
    diagnostics = stages.run("diagnostics", assumption_diagnostics, paths, rows) if "vinn" in paths else None
    latency = stages.run("latency", act_latency, paths, {k: v[0] for k, v in data.observations(slice(0, 1)).items()})
    by_key = {(r["method"], r["seed"]): r for r in rows}
    videos = stages.run("videos", record_videos, args, paths, data, by_key, args.work_dir / "videos") if args.videos else []
    return {"diagnostics": diagnostics, "act_latency_ms": latency, "videos": videos}


NOT_IN_FINGERPRINT = ("workers", "out", "run_dir", "data_dir", "cache_dir", "train_seeds", "k_sweep", "demo_sweep",
                      "sweep_shared_encoder", "replay", "method", "training", "retrain")
"""Arguments that do not change what one training produces (where things go, how many trainings, what follows them)."""


def source_digest() -> str:
    """sha256 of the code that shapes a training's results: every module of the package (its envs and demos too) but
    the report writer, so any change to training, fitting, rollouts or the tasks makes earlier records unusable."""
    import vinn_policy.demos
    import vinn_policy.envs

    import vinn_policy
    import vinn_policy.harness.report

    digest = hashlib.sha256()
    for package in (vinn_policy, vinn_policy.envs, vinn_policy.demos):
        root = Path(package.__file__).parent
        for file in sorted(root.rglob("*.py")):
            if file.resolve() != Path(vinn_policy.harness.report.__file__).resolve():
                digest.update(f"{package.__name__}/{file.relative_to(root).as_posix()}\n".encode() + file.read_bytes())
    return digest.hexdigest()


class TrainingRecords:
    """Each finished training's results (its record, episode rows and, for training 0, diagnostics, latency and videos)
    in report_dir/trainings/training<i>.json, so a long --train-seeds run resumes across machines from its committed
    report folder as well as from runs/cache. A record is reused only by a run with the same fingerprint: the
    arguments (less NOT_IN_FINGERPRINT), the demonstrations (frames, actions, further observations), the package's
    code (`source_digest`), torch's version and whether training ran on a GPU; --retrain ignores records. Each
    records the commit and the machine that made it."""

    def __init__(self, args: BenchmarkArgs, data: Demos, host_speed: dict[str, float] | None = None) -> None:
        import torch

        self.folder, self.retrain = args.report_dir / "trainings", args.retrain
        settings = {k: v for k, v in asdict(args).items() if k not in NOT_IN_FINGERPRINT}
        code = {"source": source_digest(), "torch": torch.__version__, "cuda": torch.cuda.is_available()}
        digest = hashlib.sha256(json.dumps([settings, code], sort_keys=True).encode())
        digest.update(frames_digest(data.frames).encode())
        arrays = [np.asarray(data.actions, np.float32), np.asarray(data.episode_ids, np.int64), *(data.obs[k] for k in sorted(data.obs))]
        for key, array in zip(["actions", "episode_ids", *sorted(data.obs)], arrays, strict=True):
            digest.update(key.encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        self.fingerprint = digest.hexdigest()[:20]
        self.revision = source_revision() or "unknown"  # at the start: the code this run loaded, not what is checked out at its end
        self.machine = {**environment(), "host_speed": host_speed}

    def path(self, training: int) -> Path:
        return self.folder / f"training{training}.json"

    def load(self, training: int) -> dict[str, Any] | None:
        """The recorded training, or None (no record, another run's, or --retrain)."""
        path = self.path(training)
        if self.retrain or not path.exists():
            return None
        try:
            saved = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            print(f"training {training}: {path} is unreadable ({e}); training again and replacing it", flush=True)
            return None
        if saved.get("fingerprint") != self.fingerprint or saved.get("training") != training:
            print(f"training {training}: {path} was recorded by a run with other arguments, demonstrations or code "
                  f"(fingerprint {saved.get('fingerprint')}, this run's {self.fingerprint}); training again and replacing it", flush=True)
            return None
        print(f"training {training}: reusing {path} (recorded {saved['run']['date']} by commit {saved['run']['commit']}); "
              "--retrain trains again", flush=True)
        return {**saved, "run": {**saved["run"], "reused": True}}

    def save(self, training: int, record: dict[str, Any], rows: list[dict[str, Any]], extras: dict[str, Any],
             seconds: float, stage_seconds: dict[str, float]) -> dict[str, Any]:
        run = {"commit": self.revision, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "wall_seconds": round(seconds, 1),
               "stage_seconds": stage_seconds, "environment": self.machine, "reused": False}
        saved = {"fingerprint": self.fingerprint, "training": training, "run": run, "record": record, "episodes": rows,
                 "extras": extras}
        atomic_write_text(self.path(training), json.dumps(saved))
        return saved


def assumption_diagnostics(paths: dict[str, str], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """VINN's assumption diagnostics on its database, with coverage from its closed-loop nearest distances."""
    policy = VINNPolicy.load(paths["vinn"])
    nn = np.asarray([d for r in rows if r["method"] == "vinn" for d in r.get("nn_distance", [])])
    return diagnose(policy.database, policy.config.k, nn).to_dict()


def _k_sweep(args: BenchmarkArgs, data: Demos, encoder: Encoder, run_dir: Path, make) -> dict[str, Any]:
    from vinn_policy.harness.evaluation import summarize as summ

    out = {}
    train_rows = np.flatnonzero(data.episode_ids < args.demos)
    for k in args.k_sweep:
        policy = VINNPolicy.fit(data.frames[train_rows], data.actions[train_rows], data.episode_ids[train_rows],
                                encoder=encoder, k=k, gripper_index=GRIPPER_INDEX)
        path = policy.save(run_dir / "sweep" / f"vinn_k{k}")
        rows = evaluate_methods(make, {f"vinn_k{k}": path}, args.eval_seeds(), args.workers, cache_dir=args.cache_dir)
        out[str(k)] = summ(rows)["methods"][f"vinn_k{k}"]
    return out


def _demo_sweep(args: BenchmarkArgs, data: Demos, encoder: Encoder, run_dir: Path, make, main: dict,
                main_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """VINN, BC-rep and BC trained on the first n demos only (training 0's seed): VINN's BYOL encoder and k too,
    unless --sweep-shared-encoder keeps training 0's encoder (BYOL on all demos) and k for VINN and BC-rep."""
    out: dict[str, Any] = {}
    methods = tuple(m for m in ("vinn", "bc_rep", "bc", "bc_paper") if m in args.methods)
    main_summary = summarize(main_rows)["methods"]
    for n in args.demo_sweep:
        if n > args.demos:
            raise ValueError(f"--demo-sweep {n} exceeds --demos {args.demos}")
        if n == args.demos:  # training 0 already evaluated these policies on the same seeds
            out[str(n)] = {"summary": {m: main_summary[m] for m in methods},
                           "offline": {m: main["offline"][m] for m in methods}, "k": main.get("k")}
            continue
        shared = args.sweep_shared_encoder
        sweep_encoder = encoder if shared else build_encoder(args, data.frames[data.episode_ids < n])[0]
        trained = train_policies(args, data, n, sweep_encoder, run_dir / "sweep" / f"demos{n}", k=main.get("k") if shared else None,
                                 methods=methods)
        rows = evaluate_methods(make, trained["paths"], args.eval_seeds(), args.workers, cache_dir=args.cache_dir)
        out[str(n)] = {"summary": summarize(rows)["methods"], "offline": trained["offline"], "k": trained.get("k")}
    return out


def replay(args: BenchmarkArgs) -> dict[str, Any]:
    """Re-run one evaluation seed of a saved run exactly and write its video."""
    from vinn_policy.envs import make_env

    training = args.training if args.method in LEARNED else 0  # the untrained methods were fitted once
    path = policy_dir(args.work_dir, training) / args.method
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: training {training}'s policies are not on this machine (a run that reuses a "
                                f"training's record, {args.report_dir / 'trainings'}/training{training}.json, trains nothing). Move that "
                                "record away and run the benchmark again to train it (its cached stages are reused; on another machine its results "
                                "may differ from the recorded ones, which that run replaces).")
    policy = load_policy(path)
    env = make_env(args.task, **args.env_kwargs(render=True))
    try:
        episode = run_episode(env, policy, args.replay, render=True)
    finally:
        env.close()
    video = write_mp4(args.work_dir / "videos" / f"replay_{args.method}_seed{args.replay}.mp4", episode.frames)
    result = {"method": args.method, "seed": args.replay, "success": episode.success, "steps": episode.steps, "video": str(video)}
    result.update(compare_with_recorded(args.report_dir / "results.json", args.method, args.replay, path, episode, training))
    print(json.dumps(result))
    return result


def compare_with_recorded(results_file: Path, method: str, seed: int, policy_path: Path, episode, training: int = 0) -> dict[str, Any]:
    """Whether a re-run episode reproduces the one results.json recorded, or why that cannot be judged.

    A comparison only means something if the saved policy is the one that produced the recorded episode, so
    the policy's artefact checksum must match the one results.json recorded for it.
    """
    if not results_file.exists():
        return {"reproduces": None, "why": f"no {results_file} to compare with"}
    results = json.loads(results_file.read_text())
    ref = [r for r in results["episodes"] if r["method"] == method and r["seed"] == seed and r.get("training", 0) == training]
    if not ref:
        return {"reproduces": None, "why": f"{results_file} has no {method} episode with seed {seed} in training {training}"}
    recorded = {"success": ref[0]["success"], "steps": ref[0]["steps"]}
    trainings = results.get("trainings") or [results]  # results.json from before --train-seeds kept one training's policies at the top
    policies = trainings[training].get("policies", {}) if training < len(trainings) else {}
    saved = policies.get(method, {}).get("sha256")
    if saved is None:
        return {"recorded": recorded, "reproduces": None,
                "why": f"{results_file} records no checksum for {method}'s policy, so it cannot tell whether {policy_path} "
                       "produced the recorded episode"}
    current = artefact_digest(policy_path)
    if saved != current:
        return {"recorded": recorded, "reproduces": None,
                "why": f"{policy_path} is not the policy that produced {results_file} (artefact checksum {current[:12]}, "
                       f"recorded {saved[:12]}): it was trained again since. Point --out at the report of the run that saved it."}
    return {"recorded": recorded, "reproduces": recorded == {"success": episode.success, "steps": episode.steps}}


def main(args: BenchmarkArgs) -> dict[str, Any]:
    """Entry point of run_<task>.py: exits non-zero with the failing stage's name on any error."""
    try:
        return replay(args) if args.replay is not None else run(args)
    except Exception as e:
        raise SystemExit(f"run_{args.task}: {e}") from e
