"""Benchmark output: JSON for machines, a markdown table for people, both written atomically."""

from __future__ import annotations

import json
import platform
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from vinn_policy.artefact import atomic_write_text


def environment() -> dict[str, str | int]:
    """Versions and machine facts recorded with every result."""
    import torch

    import vinn_policy

    return {
        "vinn_policy": vinn_policy.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def source_revision() -> str | None:
    """The git commit of the code running (with "+changes" if the code differs from it), or None outside a checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)benchmarks/results"],
                               cwd=root, capture_output=True, text=True, check=True).stdout.strip()  # a run rewrites its results
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+changes" if dirty else "")


def read_kernels(gib: float = 1.0, repeats: int = 10) -> dict[str, float]:
    """Bytes/s at which several reductions read a float32 buffer far larger than the caches (torch and numpy sums and
    maxima): no single kernel is trusted to be memory-bound on every host."""
    import torch

    x = torch.ones(int(gib * 2**30) // 4)
    a = x.numpy()
    kernels = {"torch.sum": lambda: x.sum(), "torch.amax": lambda: x.amax(), "numpy.sum": lambda: a.sum(), "numpy.max": lambda: a.max()}
    return {name: x.numel() * 4 / (time_calls(fn, repeats, warmup=2)["median_ms"] / 1e3) for name, fn in kernels.items()}


def read_bandwidth(gib: float = 1.0, repeats: int = 10) -> float:
    """This machine's memory read bandwidth in bytes/s: the fastest of `read_kernels`."""
    return max(read_kernels(gib, repeats).values())


def host_speed() -> dict[str, float]:
    """How fast this machine is, so that wall times from different machines can be compared: its memory read
    bandwidth and one ResNet-18 forward pass on one 84 px image in one thread (the encoder's share of an act())."""
    from vinn_policy.encoder import Encoder, EncoderConfig

    with one_torch_thread():
        encoder, image = Encoder(EncoderConfig(image_size=84)), np.zeros((84, 84, 3), np.uint8)
        forward = time_calls(lambda: encoder.embed(image), repeats=20)["median_ms"]
    return {"read_bandwidth_gb_per_s": round(read_bandwidth(0.5) / 1e9, 2), "resnet18_84px_forward_ms": round(forward, 2)}


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch on one intra-op thread inside the block (restored after): how every rollout worker runs a policy."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def time_calls(fn: Callable[[], object], repeats: int, warmup: int = 3, rounds: int = 1) -> dict[str, float]:
    """Median / p99 / mean wall time of fn() in milliseconds. With rounds > 1, `repeats` calls per round and each
    statistic's median over the rounds: a burst of other work on the host (a training in the background) spoils one
    round, not the number."""
    for _ in range(warmup):
        fn()
    stats = []
    for _ in range(rounds):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
        stats.append(latency_stats(times))
    return {key: float(np.median([s[key] for s in stats])) for key in stats[0]}


def latency_stats(times_ms: Sequence[float]) -> dict[str, float]:
    return {"median_ms": float(np.median(times_ms)), "p99_ms": float(np.percentile(times_ms, 99)), "mean_ms": float(np.mean(times_ms))}


def time_alternating(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 3) -> dict[str, dict[str, float]]:
    """time_calls for several functions called in turn, one call each per round: a drift in the host's speed (other
    tenants, clock) then touches all of them alike, so ratios of their medians hold even where absolute times move."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t) * 1e3)
    return {name: latency_stats(t) for name, t in times.items()}


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def fmt(x: object) -> str:
        if isinstance(x, float):
            return f"{x:.0f}" if 1e3 <= abs(x) < 1e15 else f"{x:.3g}"  # 1772, not 1.77e+03
        return str(x)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(x) for x in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_results(out_dir: str | Path, name: str, data: dict, markdown: str) -> tuple[Path, Path]:
    """Write `name`.json and `name`.md into out_dir (atomically) and return their paths."""
    out_dir = Path(out_dir)
    json_path, md_path = out_dir / f"{name}.json", out_dir / f"{name}.md"
    atomic_write_text(json_path, json.dumps(data, indent=2, sort_keys=True))
    atomic_write_text(md_path, markdown)
    return json_path, md_path
