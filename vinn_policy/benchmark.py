"""The closed-loop benchmark behind benchmarks/run_<task>.py: demos -> encoder -> policies -> evaluation -> report.

Every stage is cached or saved as an artefact, so a crash never corrupts what an earlier run produced:
demonstrations in data/, BYOL encoders in runs/cache/ (keyed by data + config), policies under the run
directory. All methods are evaluated on the same held-out env seeds (disjoint from demonstration seeds).
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vinn_policy.actions import GRIPPER_INDEX
from vinn_policy.artefact import artefact_digest, atomic_write_text
from vinn_policy.baselines import OpenLoopPolicy, RandomPolicy, load_policy
from vinn_policy.bc import BCConfig
from vinn_policy.byol import BYOLConfig
from vinn_policy.database import EmbeddingDatabase
from vinn_policy.demos.collect import EVAL_SEED_BASE
from vinn_policy.demos.dataset import Demos
from vinn_policy.diagnostics import diagnose
from vinn_policy.encoder import Encoder, EncoderConfig
from vinn_policy.evaluation import evaluate_methods, summarize
from vinn_policy.offline import OfflineConfig, gripper_accuracy, knn_curve, predict_frames, translation_mse
from vinn_policy.pipeline import cached_bc, cached_byol, ensure_demos
from vinn_policy.policy import VINNConfig, VINNPolicy
from vinn_policy.results import environment, host_speed, time_calls
from vinn_policy.rollout import run_episode, run_jobs
from vinn_policy.video import NeighbourStrip, write_mp4

METHODS = ("vinn", "vinn_random", "bc", "bc_rep", "open_loop", "random")
OPTIONAL_METHODS = ("vinn_dominant", "vinn_consistent")  # VINN with mode selection (VINNConfig.mode_selection)


@dataclass
class BenchmarkArgs:
    """Settings of one closed-loop benchmark run (CPU defaults; --smoke and --paper are presets)."""

    task: str = "door"
    demos: int = 50
    """Training demonstrations; 20% more (at least 2) are collected as validation episodes."""
    episodes: int = 50
    """Closed-loop evaluation episodes per method (the same env seeds for every method)."""
    k: int | None = None
    """VINN's neighbours; default: chosen on the validation episodes (offline error)."""
    encoder: str = "byol"
    """VINN's encoder: byol, random (untrained) or imagenet (needs --imagenet-weights)."""
    imagenet_weights: str | None = None
    methods: tuple[str, ...] = METHODS
    workers: int = 2
    seed: int = 0
    """Evaluation seeds are EVAL_SEED_BASE + 1000 * seed + i."""
    out: str | None = None
    """Report directory (default runs/<task>, beside the policies and videos; runs/smoke-<task> with --smoke). The committed results are
    refreshed only on purpose: --out benchmarks/results/<task>."""
    run_dir: str | None = None
    """Policies and videos (default runs/<task>)."""
    data_dir: str = "data"
    cache_dir: str = "runs/cache"
    image_size: int | None = None
    """Rendered camera images, square (default 84; 224 with --paper, the paper's encoder input)."""
    camera: str | None = None
    """Camera of the policy's images (default: the task's; robot0_eye_in_hand is the wrist camera)."""
    horizon: int | None = None
    """Episode step limit (default: the task's)."""
    byol_epochs: int = 4
    """CPU default for 50 demos (run_push.py: 2 over 100 demos); BYOL is ~1.6 s per batch of 64 at 84 px on 2 cores."""
    bc_epochs: int = 6
    """Most BC end-to-end epochs (early stopping on the validation demos may end it sooner)."""
    videos: int = 2
    """Episodes per method written as MP4 (not committed)."""
    k_sweep: tuple[int, ...] = ()
    """Closed-loop VINN success for these k as well (e.g. 1 5 10 20 50)."""
    demo_sweep: tuple[int, ...] = ()
    """Closed-loop VINN, BC-rep and BC for these training-demo counts (VINN just uses a subset database)."""
    replay: int | None = None
    """Re-run one seed with --method from the saved policies and write its video; skips everything else."""
    method: str = "vinn"
    provenance: bool = False
    """Write every VINN step's neighbours (episode, frame, distance, weight, action) to <run_dir>/provenance/."""
    retrain: bool = False
    """Retrain the BYOL encoder and the BC baselines even if cached."""
    smoke: bool = False
    """About a minute: tiny images, demos, epochs and episodes (for tests)."""
    paper: bool = False
    """The paper's settings: ResNet-50, 224 px, 100 BYOL epochs, paper batch sizes (a GPU job)."""

    def __post_init__(self) -> None:
        unknown = set(self.methods) - set(METHODS + OPTIONAL_METHODS)
        if unknown:
            raise ValueError(f"Unknown methods {sorted(unknown)}; available: {list(METHODS + OPTIONAL_METHODS)}")
        from vinn_policy.envs import resolve_camera

        self.camera = resolve_camera(self.task, self.camera)  # recorded in results.json as used
        if self.encoder not in ("byol", "random", "imagenet"):
            raise ValueError(f"--encoder must be byol, random or imagenet; got {self.encoder!r}")
        if self.encoder == "imagenet" and not self.imagenet_weights:
            raise ValueError("--encoder imagenet needs --imagenet-weights PATH (a local torchvision ResNet file).")
        if self.smoke:
            self.demos, self.episodes, self.image_size, self.byol_epochs, self.bc_epochs = 4, 4, 32, 1, 1
            self.horizon = self.horizon or 40
            self.videos = min(self.videos, 1)

    @property
    def image_px(self) -> int:
        """The rendered image size in use: --image-size, else 224 with --paper, else 84. Resolved here rather
        than in __post_init__, because the scripts' tyro defaults are instances made without --paper."""
        return self.image_size or (224 if self.paper else 84)

    @property
    def report_dir(self) -> Path:
        return Path(self.out or (f"runs/smoke-{self.task}" if self.smoke else f"runs/{self.task}"))

    @property
    def work_dir(self) -> Path:
        return Path(self.run_dir or (f"runs/smoke-{self.task}" if self.smoke else f"runs/{self.task}"))

    @property
    def val_demos(self) -> int:
        return max(2, round(0.2 * self.demos))

    def encoder_config(self) -> EncoderConfig:
        return EncoderConfig.paper() if self.paper else EncoderConfig(image_size=self.image_px)

    def byol_config(self) -> BYOLConfig:
        if self.paper:
            return BYOLConfig.paper()
        extra = {"batch_size": 16, "hidden_dim": 128} if self.smoke else {}
        return BYOLConfig(encoder=self.encoder_config(), epochs=self.byol_epochs, **extra)

    def bc_config(self, representation: bool = False) -> BCConfig:
        if self.paper:
            return replace(BCConfig.paper(representation), gripper_index=GRIPPER_INDEX)
        return BCConfig(encoder=self.encoder_config(), epochs=self.bc_epochs, gripper_index=GRIPPER_INDEX,
                        batch_size=16 if self.smoke else 64)

    def eval_seeds(self) -> list[int]:
        return [EVAL_SEED_BASE + 1000 * self.seed + i for i in range(self.episodes)]


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


def choose_k(encoder_embeddings: np.ndarray, data: Demos, train_rows: np.ndarray, val_rows: np.ndarray) -> tuple[int, dict]:
    """The k with the lowest offline translation MSE on the validation rows, and the whole k curve.

    encoder_embeddings: (N, D) embeddings of all of data's frames (train and validation rows index into them).
    """
    curve = knn_curve(encoder_embeddings, data.actions, data.episode_ids, train_rows, val_rows, OfflineConfig(gripper_index=GRIPPER_INDEX))
    return int(curve["k"][int(np.argmin(curve["mse"]))]), curve


def fit_vinn(encoder: Encoder, embeddings: np.ndarray, data: Demos, train_rows: np.ndarray, val_rows: np.ndarray,
             k: int | None = None, mode_selection: str = "none") -> tuple[VINNPolicy, dict]:
    """VINN over the train rows' embeddings (computed once, for choosing k as well), with k chosen on the validation
    rows unless given; calibrated. Returns (policy, {"k", "k_curve_val"})."""
    chosen, curve = choose_k(embeddings, data, train_rows, val_rows)
    k = k or chosen
    database = EmbeddingDatabase(embeddings[train_rows], data.actions[train_rows], data.episode_ids[train_rows],
                                 data.frame_indices[train_rows], gripper_index=GRIPPER_INDEX)
    policy = VINNPolicy(encoder, database, VINNConfig(k=k, gripper_index=GRIPPER_INDEX, mode_selection=mode_selection))
    policy.calibrate()  # uncertainty reference, saved with the policy
    return policy, {"k": k, "k_curve_val": curve}


def build_encoder(args: BenchmarkArgs, frames: np.ndarray) -> tuple[Encoder, dict]:
    if args.encoder == "byol":
        return cached_byol(frames, args.byol_config(), args.cache_dir, retrain=args.retrain)
    if args.encoder == "imagenet":
        return Encoder.imagenet(args.imagenet_weights, args.encoder_config()), {"cached": False}
    torch.manual_seed(args.seed)
    return Encoder(args.encoder_config()), {"cached": False}


def train_policies(args: BenchmarkArgs, data: Demos, n_train: int, encoder: Encoder, policy_dir: Path,
                   k: int | None = None) -> dict[str, Any]:
    """Fit every requested method on the first n_train episodes (validation: the last val_demos); save them."""
    train_rows = np.flatnonzero(data.episode_ids < n_train)
    val_rows = np.flatnonzero(data.episode_ids >= data.num_episodes - args.val_demos)
    rows = np.concatenate([train_rows, val_rows])
    val_eps = np.unique(data.episode_ids[val_rows])
    frames, actions, eps = data.frames[train_rows], data.actions[train_rows], data.episode_ids[train_rows]
    info: dict[str, Any] = {"train_episodes": n_train, "val_episodes": len(val_eps), "train_seconds": {}, "paths": {}, "k_by_method": {}}

    def timed(name: str, fit) -> None:
        t = time.perf_counter()
        policy = fit()
        info["train_seconds"][name] = round(time.perf_counter() - t, 1)
        info["paths"][name] = str(policy.save(policy_dir / name))

    if torch.cuda.is_available():  # embed the demos there (artefacts are saved as CPU tensors; rollouts run on the CPU)
        encoder = encoder.to("cuda")
    embeddings: dict[int, np.ndarray] = {}

    def vinn(name: str, enc: Encoder, mode_selection: str = "none") -> VINNPolicy:
        if id(enc) not in embeddings:  # once per encoder: the same embeddings choose k and fill the database
            embeddings[id(enc)] = enc.embed(data.frames)
        policy, chosen = fit_vinn(enc, embeddings[id(enc)], data, train_rows, val_rows, k or args.k, mode_selection)
        info["k_by_method"][name] = chosen["k"]
        if enc is encoder:
            info.update(chosen)  # VINN's k and validation curve, shared by its mode-selection variants
        return policy

    if "vinn" in args.methods:
        timed("vinn", lambda: vinn("vinn", encoder))
    for name in OPTIONAL_METHODS:
        if name in args.methods:
            timed(name, functools.partial(vinn, name, encoder, name.removeprefix("vinn_")))
    if "vinn_random" in args.methods:  # the untrained encoder's neighbours, with their own k
        torch.manual_seed(args.seed)
        untrained = Encoder(encoder.config).to(encoder.device)
        timed("vinn_random", lambda: vinn("vinn_random", untrained))
    bc_data = (data.frames[rows], data.actions[rows], data.episode_ids[rows])
    if "bc" in args.methods:  # cached like BYOL: a rerun on the same data and settings reuses the trained policy
        timed("bc", lambda: cached_bc(*bc_data, args.bc_config(), val_eps, None, args.cache_dir, args.retrain)[0])
    if "bc_rep" in args.methods:
        timed("bc_rep", lambda: cached_bc(*bc_data, args.bc_config(representation=True), val_eps, encoder, args.cache_dir,
                                          args.retrain)[0])
    if "open_loop" in args.methods:
        timed("open_loop", lambda: OpenLoopPolicy.fit(frames, actions, eps))
    if "random" in args.methods:
        timed("random", lambda: RandomPolicy(action_dim=actions.shape[1], seed=args.seed))
    info["offline"] = offline_errors(info["paths"], data, val_rows)
    return info


def offline_errors(paths: dict[str, str], data: Demos, rows: np.ndarray) -> dict[str, dict[str, float]]:
    """Translation MSE and gripper accuracy of each saved policy on the validation frames."""
    errors = {}
    target = data.actions[rows]
    for name, path in paths.items():
        pred = predict_frames(load_policy(path), data.frames[rows], data.episode_ids[rows])
        errors[name] = {"mse": translation_mse(pred, target), "gripper_accuracy": gripper_accuracy(pred, target, GRIPPER_INDEX)}
    return errors


def act_latency(paths: dict[str, str], image: np.ndarray) -> dict[str, float]:
    """Median act() milliseconds of each policy on one image (in this process, torch's default threads)."""
    out = {}
    for name, path in paths.items():
        policy = load_policy(path)
        policy.reset(seed=0)
        out[name] = time_calls(lambda p=policy: p.act({"image": image}), repeats=30)["median_ms"]
    return out


def record_videos(args: BenchmarkArgs, paths: dict[str, str], data: Demos, rows_by_key: dict, video_dir: Path) -> list[dict]:
    """Re-run the first `videos` seeds of each method with rendering, in `workers` processes; check they
    reproduce the evaluation. VINN's frames carry a strip of its nearest demonstration frames."""
    from vinn_policy.envs import make_env

    make = functools.partial(make_env, args.task, image_size=args.image_px, camera=args.camera, render_mode="rgb_array", render_size=256, horizon=args.horizon)
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


def run(args: BenchmarkArgs) -> dict[str, Any]:
    """The whole benchmark; returns (and writes) the results."""
    from vinn_policy.envs import make_env
    from vinn_policy.report import write_report

    speed = host_speed()  # before the clock starts: the probe is not part of the run's wall time
    start = time.perf_counter()
    stages = Stages()
    run_dir, out = args.work_dir, args.report_dir
    data = stages.run("demonstrations", ensure_demos, args.task, args.demos + args.val_demos, args.data_dir,
                      image_size=args.image_px, camera=args.camera)
    train_frames = data.frames[data.episode_ids < args.demos]
    encoder, encoder_info = stages.run("encoder", build_encoder, args, train_frames)
    trained = stages.run("policies", train_policies, args, data, args.demos, encoder, run_dir / "policies")
    make = functools.partial(make_env, args.task, image_size=args.image_px, camera=args.camera, render_mode=None, horizon=args.horizon)
    rows = stages.run("evaluation", evaluate_methods, make, trained["paths"], args.eval_seeds(), args.workers,
                      provenance=args.provenance)
    for r in rows:  # per-step neighbour lists are large: one file per episode, not results.json
        if "provenance" in r:
            path = run_dir / "provenance" / f"{r['method']}_seed{r['seed']}.json"
            atomic_write_text(path, json.dumps(r.pop("provenance")))
            r["provenance_file"] = str(path)
    summary = summarize(rows)
    diagnostics = stages.run("diagnostics", assumption_diagnostics, trained["paths"], rows) if "vinn" in trained["paths"] else None

    sweeps: dict[str, Any] = {}
    if args.k_sweep:
        sweeps["k"] = stages.run("k sweep", _k_sweep, args, data, encoder, run_dir, make)
    if args.demo_sweep:
        sweeps["demos"] = stages.run("demo sweep", _demo_sweep, args, data, encoder, run_dir, make, trained, summary)
    latency = stages.run("latency", act_latency, trained["paths"], data.frames[0])
    by_key = {(r["method"], r["seed"]): r for r in rows}
    videos = stages.run("videos", record_videos, args, trained["paths"], data, by_key, run_dir / "videos") if args.videos else []
    results = {
        "args": asdict(args), "environment": {**environment(), "host_speed": speed}, "demos": {"train": args.demos, "val": args.val_demos,
                                                                       "frames": int(len(data.frames))},
        "encoder": {"kind": args.encoder, **{k: v for k, v in encoder_info.items() if k != "losses"},
                    "byol_losses": encoder_info.get("losses"), "config": asdict(encoder.config)},
        "k": trained.get("k"), "k_by_method": trained["k_by_method"], "k_curve_val": trained.get("k_curve_val"),
        "train_seconds": trained["train_seconds"],
        "policies": {name: {"path": path, "sha256": artefact_digest(path)} for name, path in trained["paths"].items()},
        "offline": trained["offline"], "summary": summary, "diagnostics": diagnostics, "episodes": rows, "sweeps": sweeps,
        "act_latency_ms": latency, "videos": videos, "stage_seconds": stages.seconds,
        "wall_seconds": round(time.perf_counter() - start, 1),
    }
    write_report(out, results)
    return results


def assumption_diagnostics(paths: dict[str, str], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """VINN's assumption diagnostics on its database, with coverage from its closed-loop nearest distances."""
    policy = VINNPolicy.load(paths["vinn"])
    nn = np.asarray([d for r in rows if r["method"] == "vinn" for d in r.get("nn_distance", [])])
    return diagnose(policy.database, policy.config.k, nn).to_dict()


def _k_sweep(args: BenchmarkArgs, data: Demos, encoder: Encoder, run_dir: Path, make) -> dict[str, Any]:
    from vinn_policy.evaluation import summarize as summ

    out = {}
    train_rows = np.flatnonzero(data.episode_ids < args.demos)
    for k in args.k_sweep:
        policy = VINNPolicy.fit(data.frames[train_rows], data.actions[train_rows], data.episode_ids[train_rows],
                                encoder=encoder, k=k, gripper_index=GRIPPER_INDEX)
        path = policy.save(run_dir / "sweep" / f"vinn_k{k}")
        rows = evaluate_methods(make, {f"vinn_k{k}": path}, args.eval_seeds(), args.workers)
        out[str(k)] = summ(rows)["methods"][f"vinn_k{k}"]
    return out


def _demo_sweep(args: BenchmarkArgs, data: Demos, encoder: Encoder, run_dir: Path, make, main: dict, main_summary: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    methods = [m for m in ("vinn", "bc_rep", "bc") if m in args.methods]
    for n in args.demo_sweep:
        if n > args.demos:
            raise ValueError(f"--demo-sweep {n} exceeds --demos {args.demos}")
        if n == args.demos:  # the main run already evaluated these policies on the same seeds
            out[str(n)] = {"summary": {m: main_summary["methods"][m] for m in methods},
                           "offline": {m: main["offline"][m] for m in methods}, "k": main.get("k")}
            continue
        policy_dir = run_dir / "sweep" / f"demos{n}"
        trained = train_policies(replace(args, methods=tuple(m for m in methods if m != "vinn")), data, n, encoder, policy_dir)
        if "vinn" in methods:  # instant: drop episodes from the main database, no re-embedding; the main run's k
            vinn = VINNPolicy.load(main["paths"]["vinn"])
            vinn.remove_episodes(np.arange(n, args.demos))
            vinn.calibrate()
            trained["paths"]["vinn"] = str(vinn.save(policy_dir / "vinn"))
            val_rows = np.flatnonzero(data.episode_ids >= data.num_episodes - args.val_demos)
            trained["offline"].update(offline_errors({"vinn": trained["paths"]["vinn"]}, data, val_rows))
        rows = evaluate_methods(make, trained["paths"], args.eval_seeds(), args.workers)
        out[str(n)] = {"summary": summarize(rows)["methods"], "offline": trained["offline"], "k": main.get("k")}
    return out


def replay(args: BenchmarkArgs) -> dict[str, Any]:
    """Re-run one evaluation seed of a saved run exactly and write its video."""
    from vinn_policy.envs import make_env

    path = args.work_dir / "policies" / args.method
    policy = load_policy(path)
    env = make_env(args.task, image_size=args.image_px, camera=args.camera, render_mode="rgb_array", render_size=256, horizon=args.horizon)
    try:
        episode = run_episode(env, policy, args.replay, render=True)
    finally:
        env.close()
    video = write_mp4(args.work_dir / "videos" / f"replay_{args.method}_seed{args.replay}.mp4", episode.frames)
    result = {"method": args.method, "seed": args.replay, "success": episode.success, "steps": episode.steps, "video": str(video)}
    result.update(compare_with_recorded(args.report_dir / "results.json", args.method, args.replay, path, episode))
    print(json.dumps(result))
    return result


def compare_with_recorded(results_file: Path, method: str, seed: int, policy_path: Path, episode) -> dict[str, Any]:
    """Whether a re-run episode reproduces the one results.json recorded, or why that cannot be judged.

    A comparison only means something if the saved policy is the one that produced the recorded episode, so
    the policy's artefact checksum must match the one results.json recorded for it.
    """
    if not results_file.exists():
        return {"reproduces": None, "why": f"no {results_file} to compare with"}
    results = json.loads(results_file.read_text())
    ref = [r for r in results["episodes"] if r["method"] == method and r["seed"] == seed]
    if not ref:
        return {"reproduces": None, "why": f"{results_file} has no {method} episode with seed {seed}"}
    recorded = {"success": ref[0]["success"], "steps": ref[0]["steps"]}
    saved = results.get("policies", {}).get(method, {}).get("sha256")
    if saved is None:
        return {"recorded": recorded, "reproduces": None,
                "why": f"{results_file} records no checksum for {method}'s policy, so it cannot tell whether {policy_path} "
                       "produced the recorded episode"}
    if saved != artefact_digest(policy_path):
        return {"recorded": recorded, "reproduces": None,
                "why": f"{policy_path} is not the policy that produced {results_file} (artefact checksum {artefact_digest(policy_path)[:12]}, "
                       f"recorded {saved[:12]}): it was trained again since. Point --out at the report of the run that saved it."}
    return {"recorded": recorded, "reproduces": recorded == {"success": episode.success, "steps": episode.steps}}


def main(args: BenchmarkArgs) -> dict[str, Any]:
    """Entry point of run_<task>.py: exits non-zero with the failing stage's name on any error."""
    try:
        return replay(args) if args.replay is not None else run(args)
    except Exception as e:
        raise SystemExit(f"run_{args.task}: {e}") from e
