"""Performance of VINN on this machine: search backends up to 1M frames against the memory-read bound, float16 and
int8 codes, act() latency against the encoder's from 1k to 1M frames (where index="auto" must switch), BYOL
throughput against byol-pytorch, and closed-loop evaluation throughput with 1 and 2 workers.

    python benchmarks/perf.py                 # ~10 min; writes runs/perf/perf.{json,md}
    python benchmarks/perf.py --out benchmarks/results   # refreshes the committed perf.md
    python benchmarks/perf.py --smoke         # seconds, for tests

Large databases are synthetic: episodes of 50 frames that are smooth random walks in a 16-d latent space,
mapped linearly to 512-d with a little noise. Like real demonstration embeddings they have a low intrinsic
dimension; iid Gaussian vectors have no neighbourhood structure at all and are the worst case of any
approximate index (one such row is measured too). The byol-pytorch comparison needs
`pip install byol-pytorch==0.8.2` (not a dependency); without it that row says so.
"""

from __future__ import annotations

import functools
import importlib.metadata
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import tyro

from vinn_policy import BYOLConfig, EmbeddingDatabase, Encoder, EncoderConfig, VINNConfig, VINNPolicy, train_byol
from vinn_policy.byol import augmentation
from vinn_policy.encoder import build_trunk, normalize, resize_uint8
from vinn_policy.harness.results import (
    environment,
    markdown_table,
    read_kernels,
    time_alternating,
    time_calls,
    write_results,
)
from vinn_policy.lwr import knn
from vinn_policy.search import AUTO_IVF_FRAMES, recall

BACKENDS = [("exact", "float32"), ("exact", "float16"), ("flat", "float32"), ("ivf", "float32")]


@dataclass
class Args:
    database_sizes: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000)
    """Frames in the synthetic databases of the backend table (1M x 512 float32 = 2 GB)."""
    act_sizes: tuple[int, ...] = (1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000)
    """Frames of the act() latency curve, each searched exactly and with ivf (where index="auto" should switch)."""
    act_budget: float = 1.2
    """act() should take at most this many times the encoder's forward pass at every database size."""
    batch: int = 8
    """Queries of the batched search timing (act_batch over parallel envs)."""
    k: int = 5
    """Neighbours of act() (the policy default)."""
    recall_k: int = 10
    """Neighbours of the backend table, whose recall@k is measured against exact float32 search."""
    queries: int = 200
    """Held-out query embeddings per size (recall over all; single-query latency over up to `repeats`)."""
    repeats: int = 200
    """Timed calls per measurement (fewer for slow ones: about 2M frames' worth, at least 10)."""
    byol_steps: int = 6
    """Timed BYOL optimiser steps per implementation and round (two rounds, alternating)."""
    eval_episodes: int = 12
    eval_horizon: int = 100
    policy: str = "runs/door/policies/training0/vinn"
    """A saved VINN policy whose real embeddings measure float16's effect on actions (skipped if absent)."""
    out: str = "runs/perf"
    """Report folder; --out benchmarks/results refreshes the committed perf.md."""
    name: str = "perf"
    smoke: bool = False
    """Tiny sizes: a few seconds, for the test suite."""


def trajectory_embeddings(n: int, dim: int = 512, seed: int = 0, frames: int = 50) -> np.ndarray:
    """n synthetic embeddings shaped like demonstrations (see module docstring); seed 1+ gives unseen episodes."""
    rng = np.random.default_rng(seed)
    lift = np.random.default_rng(12345).standard_normal((16, dim)).astype(np.float32) / 4  # shared by all seeds
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 65_536):  # in chunks: 1M x 512 floats of temporaries would double the memory
        m = min(65_536, n - start)
        eps = -(-m // frames)
        walk = np.cumsum(rng.standard_normal((eps, frames, 16), dtype=np.float32) * 0.3, axis=1)
        walk += rng.standard_normal((eps, 1, 16), dtype=np.float32) * 3
        out[start : start + m] = walk.reshape(-1, 16)[:m] @ lift + 0.05 * rng.standard_normal((m, dim), dtype=np.float32)
    return out


def backend_rows(n: int, args: Args, bandwidth: float, gaussian: bool = False) -> list[dict]:
    """Search+blend latency, build time, recall@k and memory of each backend on one n-frame database."""
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((n, 512), dtype=np.float32) if gaussian else trajectory_embeddings(n)
    queries = rng.standard_normal((args.queries, 512), dtype=np.float32) if gaussian else trajectory_embeddings(args.queries, seed=1)
    actions, episodes = rng.uniform(-1, 1, (n, 4)).astype(np.float32), np.arange(n) // 50
    truth = knn(torch.from_numpy(queries), torch.from_numpy(emb), args.recall_k)[1].numpy()
    rows = []
    for index, storage in [("ivf", "float32")] if gaussian else BACKENDS:
        db = EmbeddingDatabase(emb, actions, episodes, index=index, storage=storage)
        t = time.perf_counter()
        db.search(queries[:1], args.recall_k)  # builds the index
        build = time.perf_counter() - t
        found = np.concatenate([db.search(q, args.recall_k)[1].numpy() for q in np.array_split(queries, max(1, len(queries) // 64))])
        cycle = iter(np.tile(np.arange(len(queries)), 1 + args.repeats))
        repeats = max(10, min(args.repeats, 2_000_000 // n))
        timing = time_calls(lambda db=db, cycle=cycle: db.query(queries[next(cycle)], args.recall_k), repeats)
        batch = time_calls(lambda db=db: db.query(queries[: args.batch], args.recall_k), max(5, repeats // 4))
        bytes_per_frame = db.embeddings.element_size() * db.embedding_dim + db.index.bytes_per_frame
        rows.append({"frames": n, "data": "iid Gaussian" if gaussian else "trajectories", "index": index, "storage": storage,
                     "search_blend": timing, "batch_search_blend": batch, "batch": args.batch,
                     "build_s": build, f"recall_at_{args.recall_k}": recall(found, truth),
                     "bytes_per_frame": bytes_per_frame, "nprobe": db.index.nprobe,
                     "bandwidth_bound_ms": n * db.embeddings.element_size() * db.embedding_dim / bandwidth * 1e3})
        del db
    return rows


def synthetic_demos(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n synthetic frames' embeddings, random 4-d actions (the last a gripper) and 50-frame episodes."""
    return trajectory_embeddings(n), np.random.default_rng(0).uniform(-1, 1, (n, 4)).astype(np.float32), np.arange(n) // 50


def synthetic_image(encoder: Encoder) -> np.ndarray:
    size = encoder.config.image_size
    return np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)


def act_latency(encoder: Encoder, n: int, k: int, repeats: int) -> dict:
    """act() latency on an n-frame database with exact search, with ivf and with index="auto", beside the encoder's own
    forward pass (each act() alternates with an encoder call, so their ratio survives drifts in the host's speed), and
    search+blend alone: where exact search stops fitting the budget is where "auto" should switch."""
    (emb, actions, episodes), image, query = synthetic_demos(n), synthetic_image(encoder), trajectory_embeddings(1, seed=2)
    repeats = max(20, min(repeats, 2_000_000 // n))
    out: dict = {"frames": n}
    for index in ("exact", "ivf", "auto"):
        db = EmbeddingDatabase(emb, actions, episodes, gripper_index=3, index=index)
        db.query(query, k)  # builds the index
        policy = VINNPolicy(encoder, db, VINNConfig(k=k, gripper_index=3, index=index))
        timed = time_alternating({"encoder": lambda: encoder.embed(image), "act": lambda p=policy: p.act(image)}, repeats)
        out[f"act_{index}"], out[f"encoder_{index}"] = timed["act"], timed["encoder"]
        if index == "auto":
            out["auto_index"] = db.index.kind
        else:
            out[f"search_blend_{index}"] = time_calls(lambda db=db: db.query(query, k), repeats)
        del db, policy
    out["encoder"] = out["encoder_auto"]
    return out


def blas_threads(n: int, encoder: Encoder, k: int, repeats: int) -> list[dict]:
    """One query's exact search alone and a whole act() on n frames with its GEMV on 1 and on 2 OpenBLAS threads
    (lwr.SINGLE_QUERY_BLAS_THREADS): two threads read faster, but their idle spinning slows the next encoder pass."""
    from vinn_policy import lwr

    db = EmbeddingDatabase(*synthetic_demos(n), gripper_index=3, index="exact")
    policy = VINNPolicy(encoder, db, VINNConfig(k=k, gripper_index=3, index="exact"))
    image, query = synthetic_image(encoder), trajectory_embeddings(1, seed=2)
    repeats = max(10, min(repeats, 2_000_000 // n))
    rows, default = [], lwr.SINGLE_QUERY_BLAS_THREADS
    try:
        for threads in (1, 2):
            lwr.SINGLE_QUERY_BLAS_THREADS = threads
            rows.append({"frames": n, "blas_threads": threads, "search_blend": time_calls(lambda: db.query(query, k), repeats),
                         "act": time_calls(lambda: policy.act(image), repeats)})
    finally:
        lwr.SINGLE_QUERY_BLAS_THREADS = default
    return rows


def code_scans(n: int, recall_k: int, queries: int = 50) -> list[dict]:
    """faiss's fp16 and int8 scalar-quantizer scans over n synthetic frames, one query at a time, on one thread and
    split into row ranges over torch's threads (as search.HalfScan does for fp16): time and recall@k against exact
    float32. Whether int8 earns a place as a storage option beside fp16."""
    import faiss

    from vinn_policy.search import HalfScan, RangeScan

    emb, q = trajectory_embeddings(n), trajectory_embeddings(queries, seed=1)
    truth = knn(torch.from_numpy(q), torch.from_numpy(emb), recall_k)[1].numpy()
    rows = []
    for name in ("fp16", "int8"):
        if name == "fp16":
            scan = HalfScan(torch.from_numpy(emb).half())
        else:
            index = faiss.IndexScalarQuantizer(emb.shape[1], faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_L2)
            index.train(emb[np.random.default_rng(0).choice(n, min(n, 100_000), replace=False)])
            index.add(emb)
            scan = RangeScan(index)
        found = np.concatenate([scan.search(torch.from_numpy(q[i : i + 1]), recall_k).numpy() for i in range(queries)])
        cycle = iter(np.tile(np.arange(queries), 1000))
        threads = torch.get_num_threads()
        faiss.omp_set_num_threads(1)  # faiss's OpenMP calls land in torch's libgomp here: both drop to 1 thread ...
        one = time_calls(lambda s=scan, c=cycle: s.index.search(q[next(c)][None], recall_k), max(10, min(200, 2_000_000 // n)))
        faiss.omp_set_num_threads(threads)
        torch.set_num_threads(threads)  # ... so both are restored
        split = time_calls(lambda s=scan, c=cycle: s.search(torch.from_numpy(q[next(c)][None]), recall_k), max(10, min(200, 2_000_000 // n)))
        rows.append({"frames": n, "codes": name, "bytes_per_frame": scan.index.code_size, "one_thread": one, "row_ranges": split,
                     "threads": scan.threads, f"recall_at_{recall_k}": recall(list(found), truth)})
        del scan
    return rows


def float16_effect(path: str, k: int) -> dict | None:
    """Actions of a real policy's database stored in float32 vs float16, queried with held-out episodes' frames."""
    if not (Path(path) / "config.json").exists():
        return None
    db = VINNPolicy.load(path).database
    episodes = np.unique(db.episode_ids)
    held = episodes[-max(1, len(episodes) // 5):]
    rows = np.isin(db.episode_ids, held)
    queries = db.embeddings[rows].float()
    full = db.without_episodes(held)
    half = EmbeddingDatabase(full.embeddings.numpy(), full.actions.numpy(), full.episode_ids, full.frame_indices, full.gripper_index,
                             storage="float16")
    a, b = full.query(queries, k), half.query(queries, k)
    truth, found = full.search(queries, 10)[1].numpy(), half.search(queries, 10)[1].numpy()
    moves = [i for i in range(db.action_dim) if i != db.gripper_index]
    diff = np.abs(a.actions[:, moves] - b.actions[:, moves])
    return {"policy": path, "queries": int(rows.sum()), "database_frames": len(full), "k": k,
            "same_neighbours": float(np.mean((a.indices == b.indices).all(1))), "recall_at_10": recall(list(found), truth),
            "translation_abs_diff_median": float(np.median(diff)), "translation_abs_diff_max": float(diff.max()),
            "translation_scale_median": float(np.median(np.abs(a.actions[:, moves]))),
            "gripper_flips": int((a.actions[:, db.gripper_index] != b.actions[:, db.gripper_index]).sum()) if db.gripper_index is not None else 0}


def ours_train(frames: np.ndarray, config: BYOLConfig) -> None:
    train_byol(frames, replace(config, epochs=1), progress=False, device="cpu")  # one pass, as byol_pytorch_train


def byol_pytorch_train(frames: np.ndarray, config: BYOLConfig) -> None:
    """lucidrains' BYOL on the same trunk, image size, batch, MLP sizes, EMA rate, optimiser and augmentations."""
    from byol_pytorch import BYOL

    enc = config.encoder
    aug = augmentation(config)
    augment = lambda x: normalize(torch.stack([aug(img) for img in x]), enc.mean, enc.std)  # noqa: E731  ours, per image
    torch.manual_seed(config.seed)
    learner = BYOL(build_trunk(enc.arch), image_size=enc.image_size, hidden_layer=-1, projection_size=config.projection_dim,
                   projection_hidden_size=config.hidden_dim, augment_fn=augment, augment_fn2=augment, moving_average_decay=config.tau)
    optimizer = torch.optim.Adam(learner.parameters(), lr=config.lr)
    data = resize_uint8(frames, enc.image_size)
    order = torch.randperm(len(data))
    for step in range(len(data) // config.batch_size):
        loss = learner(data[order[step * config.batch_size : (step + 1) * config.batch_size]].float() / 255)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        learner.update_moving_average()


def byol_comparison(config: BYOLConfig, steps: int) -> dict:
    """Images/s of both BYOL implementations, alternating, two rounds each after a warm-up (median round)."""
    try:
        version = importlib.metadata.version("byol-pytorch")
    except importlib.metadata.PackageNotFoundError:
        version = None
    size = config.encoder.image_size
    frames = np.random.default_rng(0).integers(0, 255, (config.batch_size * steps, size, size, 3), dtype=np.uint8)
    runners = {"vinn_policy": ours_train, **({"byol_pytorch": byol_pytorch_train} if version else {})}
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    for train in runners.values():
        train(frames[: 2 * config.batch_size], config)  # warm-up (oneDNN kernels, allocator)
    for _ in range(2):
        for name, train in runners.items():
            t = time.perf_counter()
            train(frames, config)
            seconds[name].append(time.perf_counter() - t)
    rate = {name: len(frames) / float(np.median(s)) for name, s in seconds.items()}
    return {"images": len(frames), "images_per_s": rate, "seconds": seconds, "byol_pytorch_version": version,
            "ratio": rate["vinn_policy"] / rate["byol_pytorch"] if version else None}


def eval_throughput(episodes: int, horizon: int, workers: int, isolate: bool = False) -> dict:
    """Env steps/s of closed-loop VINN (untrained encoder, 1k-frame database) on door, spawn to finish."""
    from vinn_policy.envs import make_env

    from vinn_policy.harness.rollout import run_jobs

    rng = np.random.default_rng(0)
    encoder = Encoder(EncoderConfig())
    db = EmbeddingDatabase(trajectory_embeddings(1000), rng.uniform(-1, 1, (1000, 4)).astype(np.float32), np.arange(1000) // 50)
    with tempfile.TemporaryDirectory() as tmp:
        path = VINNPolicy(encoder, db).save(Path(tmp) / "vinn")
        make = functools.partial(make_env, "door", image_size=encoder.config.image_size, render_mode=None, horizon=horizon)
        t = time.perf_counter()
        steps = sum(e.steps for e in run_jobs(make, [("vinn", functools.partial(VINNPolicy.load, str(path)), s) for s in range(episodes)], workers,
                                           isolate=isolate))
        seconds = time.perf_counter() - t
    return {"workers": workers, "isolated": isolate or workers > 1, "episodes": episodes, "steps": steps, "seconds": seconds, "steps_per_s": steps / seconds}


def switch_point(latency: list[dict], budget: float) -> dict:
    """Where index="auto" should switch: the largest measured size at which act() with exact search stays within
    `budget` x the encoder's time, the smallest at which it does not, and whether AUTO_IVF_FRAMES lies between."""
    def ratio(r: dict, index: str) -> float:  # act() over the encoder calls alternated with it
        return r[f"act_{index}"]["median_ms"] / r[f"encoder_{index}"]["median_ms"]

    last_fit = max((r["frames"] for r in latency if ratio(r, "exact") <= budget), default=None)
    first_fail = min((r["frames"] for r in latency if ratio(r, "exact") > budget), default=None)
    return {"budget": budget, "auto_ivf_frames": AUTO_IVF_FRAMES, "exact_fits_up_to": last_fit, "exact_exceeds_from": first_fail,
            "auto_within_budget": all(ratio(r, "auto") <= budget for r in latency),
            "threshold_between": (last_fit is None or last_fit < AUTO_IVF_FRAMES) and (first_fail is None or AUTO_IVF_FRAMES <= first_fail),
            "act_over_encoder": {index: {str(r["frames"]): ratio(r, index) for r in latency} for index in ("exact", "ivf", "auto")}}


def plot_act(latency: list[dict], budget: float, path: Path) -> None:
    """act() time over the encoder's, against database size, for exact search, ivf and index="auto"."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = [r["frames"] for r in latency]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for index, style in (("exact", "o-"), ("ivf", "s-"), ("auto", "k--")):
        ax.plot(frames, [r[f"act_{index}"]["median_ms"] / r[f"encoder_{index}"]["median_ms"] for r in latency], style, label=f'act(), index="{index}"')
    ax.axhline(budget, color="grey", lw=0.8)
    ax.axvline(AUTO_IVF_FRAMES, color="grey", lw=0.8, ls=":")
    ax.set(xscale="log", yscale="log", xlabel="database frames", ylabel="time / encoder forward", title="act() against the encoder")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(args: Args) -> dict:
    if args.smoke:
        args.database_sizes, args.act_sizes, args.byol_steps, args.repeats, args.queries = (1_000,), (1_000,), 1, 5, 20
        args.eval_episodes, args.eval_horizon = 2, 5
    byol_config = BYOLConfig(batch_size=8, hidden_dim=256) if args.smoke else BYOLConfig()
    threads = torch.get_num_threads()  # the header's: the in-process evaluation below leaves torch on one
    reads = read_kernels(0.25 if args.smoke else 1.0)
    bandwidth = max(reads.values())
    backends = [r for n in args.database_sizes for r in backend_rows(n, args, bandwidth)]
    backends += backend_rows(max(args.database_sizes), args, bandwidth, gaussian=True)
    codes = [r for n in args.database_sizes if n >= min(100_000, max(args.database_sizes)) for r in code_scans(n, args.recall_k)]
    encoder = Encoder(EncoderConfig())
    latency = [act_latency(encoder, n, args.k, args.repeats) for n in args.act_sizes]
    blas = blas_threads(min(100_000, max(args.database_sizes)), encoder, args.k, args.repeats)
    switch = switch_point(latency, args.act_budget)
    fp16 = float16_effect(args.policy, args.k)
    byol = byol_comparison(byol_config, args.byol_steps)
    evaluation = [eval_throughput(args.eval_episodes, args.eval_horizon, w, isolate) for w, isolate in ((1, False), (1, True), (2, True))]
    data = {"args": asdict(args), "environment": environment(), "read_bandwidth_gb_per_s": bandwidth / 1e9,
            "read_kernels_gb_per_s": {name: b / 1e9 for name, b in reads.items()}, "backends": backends, "code_scans": codes,
            "act": latency, "auto_switch": switch, "blas_threads": blas, "torch_threads": threads, "float16_effect": fp16, "byol": {**byol, "config": asdict(byol_config)}, "evaluation": evaluation,
            "evaluation_speedup_2_workers": evaluation[2]["steps_per_s"] / evaluation[0]["steps_per_s"],
            "evaluation_speedup_2_workers_vs_1_isolated": evaluation[2]["steps_per_s"] / evaluation[1]["steps_per_s"]}

    rk = f"recall_at_{args.recall_k}"
    enc = byol_config.encoder
    exact32 = {r["frames"]: r["search_blend"]["median_ms"] for r in backends if (r["index"], r["storage"], r["data"]) == ("exact", "float32", "trajectories")}

    def versus_float32(r: dict) -> str:
        return f"{r['search_blend']['median_ms'] / exact32[r['frames']]:.2f}x" if r["data"] == "trajectories" and r["frames"] in exact32 else "–"

    md = [f"# VINN performance ({data['environment']['date']}, torch {torch.__version__}, {threads} threads)\n",
          f"Memory read bandwidth, measured in this run: **{bandwidth / 1e9:.1f} GB/s**, the fastest of "
          + ", ".join(f"{name} {b / 1e9:.1f}" for name, b in reads.items())
          + " GB/s over a 1 GiB float32 buffer. The bound of exact search is the stored embeddings' bytes / that bandwidth.\n",
          f"## Search backends (512-d embeddings, k = {args.recall_k})\n",
          "One query at a time, and a batch of "
          f"{args.batch} queries (act_batch over parallel envs: the stored embeddings are still read once). Recall against exact "
          "float32 search over held-out queries; memory = stored embeddings + the faiss index's copy.\n",
          markdown_table(["frames", "data", "index", "storage", "search+blend median ms", "p99 ms", "bound ms", "median / bound",
                          "vs exact float32", f"batch of {args.batch} ms", "batch / bound", f"recall@{args.recall_k}", "build s", "bytes/frame"],
                         [[r["frames"], r["data"], r["index"] + (f" (nprobe {r['nprobe']})" if r["nprobe"] else ""), r["storage"],
                           r["search_blend"]["median_ms"], r["search_blend"]["p99_ms"], r["bandwidth_bound_ms"],
                           f"{r['search_blend']['median_ms'] / r['bandwidth_bound_ms']:.2f}x" if r["index"] == "exact" else "–",
                           versus_float32(r), r["batch_search_blend"]["median_ms"],
                           f"{r['batch_search_blend']['median_ms'] / r['bandwidth_bound_ms']:.2f}x" if r["index"] == "exact" else "–",
                           f"{r[rk]:.3f}", r["build_s"], r["bytes_per_frame"]] for r in backends])]
    if codes:
        md += ["## Compact codes: faiss scalar-quantizer scans, one query\n",
               "fp16 codes are the rows' IEEE halves (float16 storage searches them: search.HalfScan); int8 codes would need the "
               "float rows kept beside them for exact re-ranking, so int8 is an option only if it is faster.\n",
               markdown_table(["frames", "codes", "bytes/frame", "one thread ms", "row ranges ms", "threads", f"recall@{args.recall_k} vs float32"],
                              [[r["frames"], r["codes"], r["bytes_per_frame"], r["one_thread"]["median_ms"], r["row_ranges"]["median_ms"],
                                r["threads"], f"{r[rk]:.3f}"] for r in codes])]
    if not args.smoke:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        plot_act(latency, args.act_budget, Path(args.out) / "act_latency.png")
    md += [f"## act() latency (one {encoder.config.image_size} px image, {encoder.config.arch}, k = {args.k})\n",
           f"Budget: act() within {args.act_budget}x the encoder's forward pass at every size. Exact search fits it up to "
           f"{switch['exact_fits_up_to']} frames and exceeds it from {switch['exact_exceeds_from']}; index=\"auto\" switches to ivf at "
           f"{AUTO_IVF_FRAMES} frames ({'between them' if switch['threshold_between'] else 'NOT between them'}) and "
           f"{'stays within the budget at every size' if switch['auto_within_budget'] else 'EXCEEDS the budget somewhere'}. "
           + ("![act latency](act_latency.png)\n" if not args.smoke else "\n"),
           "Each act() alternates with a bare encoder call; the ratios are of their medians.\n",
           markdown_table(["frames", "encoder ms", "act exact ms", "exact / encoder", "act ivf ms", "ivf / encoder", "auto index",
                           "act auto ms", "act auto p99 ms", "auto / encoder", "exact search+blend ms", "ivf search+blend ms"],
                          [[r["frames"], r["encoder"]["median_ms"], r["act_exact"]["median_ms"], f"{switch['act_over_encoder']['exact'][str(r['frames'])]:.2f}x",
                            r["act_ivf"]["median_ms"], f"{switch['act_over_encoder']['ivf'][str(r['frames'])]:.2f}x", r["auto_index"],
                            r["act_auto"]["median_ms"], r["act_auto"]["p99_ms"], f"{switch['act_over_encoder']['auto'][str(r['frames'])]:.2f}x",
                            r["search_blend_exact"]["median_ms"], r["search_blend_ivf"]["median_ms"]] for r in latency])]
    md += [f"One query's exact search on 1 and 2 OpenBLAS threads ({blas[0]['frames']} frames): the second thread speeds the "
           "search alone, but its idle spinning slows the next encoder pass, so act() runs one.\n",
           markdown_table(["BLAS threads", "search+blend median ms", "act median ms"],
                          [[r["blas_threads"], r["search_blend"]["median_ms"], r["act"]["median_ms"]] for r in blas])]
    if fp16:
        md += ["## float16 storage on real embeddings\n",
               f"`{fp16['policy']}`: {fp16['queries']} frames of held-out episodes queried against the other {fp16['database_frames']} "
               f"(k = {fp16['k']}). Recall@10 of float16 exact search against float32: {fp16['recall_at_10']:.3f}. "
               f"Same neighbour set in {fp16['same_neighbours']:.1%} of queries; translation action difference "
               f"median {fp16['translation_abs_diff_median']:.2g}, max {fp16['translation_abs_diff_max']:.2g} (typical action "
               f"component {fp16['translation_scale_median']:.2g}); gripper commands flipped: {fp16['gripper_flips']}.\n"]
    else:
        md.append(f"float16 on real embeddings: skipped, no policy at `{args.policy}` (run benchmarks/run_door.py first).\n")
    rate = byol["images_per_s"]
    md += [f"## BYOL training throughput ({enc.arch}, {enc.image_size} px, batch {byol_config.batch_size}, {byol['images']} images, "
           "same augmentations, median of 2 alternating rounds)\n",
           markdown_table(["implementation", "images/s"],
                          [["vinn_policy.train_byol", rate["vinn_policy"]]]
                          + ([[f"byol-pytorch {byol['byol_pytorch_version']}", rate["byol_pytorch"]]] if byol["ratio"] else [])),
           f"Ratio vinn_policy / byol-pytorch: **{byol['ratio']:.2f}**\n" if byol["ratio"] else
           "byol-pytorch is not installed (`pip install byol-pytorch==0.8.2`); no ratio.\n",
           f"## Closed-loop evaluation throughput (door, VINN with an untrained encoder, {args.eval_episodes} episodes x "
           f"{args.eval_horizon} steps, process start included)\n",
           markdown_table(["workers", "env steps/s", "seconds"],
                          [[{(1, False): "1 (in this process: `--workers 1`; torch on 1 thread as in workers, rendering on all)", (1, True): "1 (own single-threaded process)"}
                            .get((r["workers"], r["isolated"]), str(r["workers"])), r["steps_per_s"], r["seconds"]] for r in evaluation]),
           f"2 workers / `--workers 1`: **{data['evaluation_speedup_2_workers']:.2f}x**; 2 workers / 1 single-threaded worker: "
           f"**{data['evaluation_speedup_2_workers_vs_1_isolated']:.2f}x**. With one worker in this process, rendering (llvmpipe) "
           "already spreads over both cores, so a second process gains less than 2x.\n"]
    json_path, md_path = write_results(args.out, args.name, data, "\n".join(md))
    print("\n".join(md))
    print(f"wrote {json_path} and {md_path}")
    return data


if __name__ == "__main__":
    main(tyro.cli(Args))
