"""Performance of the VINN core on this machine: BYOL training throughput and act() latency.

    python benchmarks/perf.py                 # CPU defaults; writes benchmarks/results/perf.{json,md}
    python benchmarks/perf.py --smoke         # seconds, for tests
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import tyro

from vinn_policy import BYOLConfig, EmbeddingDatabase, Encoder, EncoderConfig, VINNConfig, VINNPolicy, train_byol
from vinn_policy.results import environment, markdown_table, time_calls, write_results


@dataclass
class Args:
    database_sizes: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000)
    """Frames in the (synthetic-embedding) databases that act() is timed against (1M x 512 float32 = 2 GB)."""
    byol_steps: int = 6
    """Timed BYOL optimiser steps (after one warm-up step)."""
    repeats: int = 200
    """act() calls timed per database size (fewer above 10k frames: at least 10, about 2M frames' worth)."""
    k: int = 5
    out: str = "benchmarks/results"
    name: str = "perf"
    smoke: bool = False
    """Tiny sizes: a few seconds, for the test suite."""


def byol_throughput(config: BYOLConfig, steps: int) -> dict[str, float]:
    """Images/s of train_byol (augmentation + online/target passes + EMA) on random frames."""
    size = config.encoder.image_size
    frames = np.random.default_rng(0).integers(0, 255, (config.batch_size * (steps + 1), size, size, 3), dtype=np.uint8)
    train_byol(frames[: config.batch_size], BYOLConfig(**{**asdict(config), "epochs": 1}), progress=False)  # warm-up
    t = time.perf_counter()
    train_byol(frames[config.batch_size :], BYOLConfig(**{**asdict(config), "epochs": 1}), progress=False)
    seconds = time.perf_counter() - t
    return {"images_per_s": config.batch_size * steps / seconds, "seconds": seconds, "images": config.batch_size * steps}


def read_bandwidth(gib: float = 1.0, repeats: int = 10) -> float:
    """This machine's memory read bandwidth in bytes/s: a float32 sum over a buffer far larger than the caches."""
    x = torch.ones(int(gib * 2**30) // 4)
    seconds = time_calls(lambda: x.sum(), repeats, warmup=2)["median_ms"] / 1e3
    return x.numel() * 4 / seconds


def act_latency(encoder: Encoder, n: int, k: int, repeats: int) -> dict[str, float]:
    """act() latency on an n-frame database of random embeddings, split into encoder and search+blend."""
    rng = np.random.default_rng(0)
    db = EmbeddingDatabase(rng.standard_normal((n, encoder.feature_dim), dtype=np.float32),
                           rng.uniform(-1, 1, (n, 4)).astype(np.float32), np.arange(n) // 50, gripper_index=3)
    policy = VINNPolicy(encoder, db, VINNConfig(k=k, gripper_index=3))
    size = encoder.config.image_size
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    query = encoder.embed(image)
    repeats = max(10, min(repeats, 2_000_000 // n))
    total = time_calls(lambda: policy.act(image), repeats)
    enc = time_calls(lambda: encoder.embed(image), repeats)
    search = time_calls(lambda: db.query(query, k), repeats)
    return {"frames": n, "act": total, "encoder": enc, "search_blend": search,
            "embedding_bytes_per_frame": 4 * encoder.feature_dim}


def main(args: Args) -> dict:
    if args.smoke:
        args.database_sizes, args.byol_steps, args.repeats = (1_000,), 1, 5
    byol_config = BYOLConfig(batch_size=8, hidden_dim=256) if args.smoke else BYOLConfig()
    encoder = Encoder(EncoderConfig())
    byol = byol_throughput(byol_config, args.byol_steps)
    bandwidth = read_bandwidth(0.25 if args.smoke else 1.0)
    latency = [act_latency(encoder, n, args.k, args.repeats) for n in args.database_sizes]
    for r in latency:  # exact search must read every stored embedding once: that is its floor
        r["bandwidth_bound_ms"] = r["frames"] * r["embedding_bytes_per_frame"] / bandwidth * 1e3
        r["search_over_bound"] = r["search_blend"]["median_ms"] / r["bandwidth_bound_ms"]
    data = {"args": asdict(args), "environment": environment(), "byol": {**byol, "config": asdict(byol_config)},
            "read_bandwidth_gb_per_s": bandwidth / 1e9, "act": latency}

    enc = byol_config.encoder
    md = [f"# VINN core performance ({data['environment']['date']}, torch {torch.__version__}, {torch.get_num_threads()} threads)\n",
          f"BYOL ({enc.arch}, {enc.image_size} px, batch {byol_config.batch_size}): "
          f"**{byol['images_per_s']:.1f} images/s** ({byol['images']} images in {byol['seconds']:.1f} s)\n",
          f"act() latency, one {enc.image_size} px image, k = {args.k}, float32 embeddings ({4 * encoder.feature_dim} bytes "
          f"per frame), exact search in torch. Memory read bandwidth measured in the same run: "
          f"**{bandwidth / 1e9:.1f} GB/s**; the bound is the stored embeddings' bytes / that bandwidth.\n",
          markdown_table(["database frames", "act median ms", "act p99 ms", "encoder median ms", "search+blend median ms",
                          "bandwidth bound ms", "search / bound"],
                         [[r["frames"], r["act"]["median_ms"], r["act"]["p99_ms"], r["encoder"]["median_ms"],
                           r["search_blend"]["median_ms"], r["bandwidth_bound_ms"], f"{r['search_over_bound']:.2f}x"] for r in latency])]
    json_path, md_path = write_results(args.out, args.name, data, "\n".join(md))
    print("\n".join(md))
    print(f"wrote {json_path} and {md_path}")
    return data


if __name__ == "__main__":
    main(tyro.cli(Args))
