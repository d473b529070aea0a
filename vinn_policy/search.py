"""Nearest-neighbour search backends of the embedding database.

    exact  brute force: reads every stored embedding once per query. float32 rows, stored transposed, go through
           OpenBLAS's GEMV (numpy) for one query and its GEMM for a batch (lwr.nearest_rows); float16 rows through faiss's
           SIMD fp16 scan (IndexScalarQuantizer QT_fp16, whose codes are the rows' IEEE halves), the rows split
           into one range per thread (HalfScan). Both near the memory bound: benchmarks/results/perf.md.
    flat   faiss IndexFlatL2: the same exact answer through faiss (slower for single queries on this CPU; there
           for comparison and for faiss users).
    ivf    faiss IndexIVFFlat: approximate; k-means splits the database into ~IVF_CELLS_PER_SQRT_N * sqrt(N) cells
           and a query visits the `nprobe` nearest (in parallel over the cells), tuned at build time to
           IVF_TARGET_RECALL on the database's own frames. Recall on held-out queries is measured in perf.py.
    auto   exact below AUTO_IVF_FRAMES frames, ivf from there on.

Every backend only proposes candidate rows; their distances are then recomputed exactly from the database's
own embeddings (lwr.exact_distances), so softmin weights and provenance do not depend on the backend.
float16 storage halves memory and, searched exactly, the bytes and time of a query; ivf stores fp16 codes.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from vinn_policy.lwr import check_k, exact_distances, knn, knn_other_groups, squared_norms

INDEXES = ("auto", "exact", "flat", "ivf")
STORAGES = ("float32", "float16")
AUTO_IVF_FRAMES = 10_000
"""From here on "auto" uses ivf: act() with exact search exceeds 1.2x the encoder's forward pass (ResNet-18, 84 px, 2
threads) from ~10k frames, act() with ivf stays within 1.1x up to 1M (benchmarks/results/perf.md, act_latency.png)."""
IVF_CELLS_PER_SQRT_N = 4
"""faiss's guideline (4-16 sqrt(N) cells): smaller cells, so a query reads fewer rows for the same recall at 1M frames
than with sqrt(N) cells (perf.md)."""
IVF_TRAIN_PER_CELL = 40
"""k-means training rows per cell (faiss warns below 39)."""
SINGLE_EPISODE_STRETCH = 50
"""Tuning nprobe on a one-episode database searches each sampled frame outside its own stretch of this many frames:
its immediate neighbours in time are nearer than any frame of a new episode would be."""
IVF_TARGET_RECALL = 0.99
"""nprobe is the smallest that finds this share of the exact 10 nearest neighbours of sampled database frames
among the other episodes (as for a frame of a new episode). Frames of genuinely new episodes are found less well:
perf.py measures recall on held-out trajectories, which at 100k frames fell well short of 0.97 with the target at 0.97."""


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}; got {value!r}.")
    return value


def _faiss():
    try:
        import faiss
    except ImportError as e:  # faiss-cpu is a dependency; this guards broken installs
        raise ImportError("The 'flat' and 'ivf' search indexes need faiss: pip install faiss-cpu") from e
    return faiss


class SearchIndex:
    """Finds the k nearest rows of `embeddings` (N, D) for (B, D) float32 queries: (distances, indices), ascending."""

    def __init__(self, embeddings: torch.Tensor, kind: str = "auto", nprobe: int | None = None, seed: int = 0,
                 episode_ids: np.ndarray | None = None) -> None:
        check_choice("index", kind, INDEXES)
        self.embeddings = embeddings
        n = len(embeddings)
        self.kind = ("ivf" if n >= AUTO_IVF_FRAMES else "exact") if kind == "auto" else kind
        self.half_scan = HalfScan(embeddings) if self.kind == "exact" and embeddings.dtype == torch.float16 else None
        # float32 exact search ranks by ||x||^2 - 2 q.x; the fp16 scan needs no norms (and no float32 copy for them)
        self._keys_sq = squared_norms(embeddings) if self.kind == "exact" and self.half_scan is None else None
        self._faiss_index = None
        if self.half_scan is not None:
            self.embeddings = self.half_scan.rows  # the same values, held once: in the scan's buffer
        elif self.kind == "exact":  # (D, N) in memory, viewed as (N, D): GEMV streams it at the memory bound (lwr.nearest_rows)
            self.embeddings = embeddings.T.contiguous().T
        if self.kind == "flat":
            faiss = _faiss()
            self._faiss_index = faiss.IndexFlatL2(embeddings.shape[1])
            self._faiss_index.add(embeddings.float().numpy())
        elif self.kind == "ivf":
            self._faiss_index = build_ivf(embeddings, nprobe, seed, episode_ids)

    @property
    def nprobe(self) -> int | None:
        return self._faiss_index.nprobe if self.kind == "ivf" else None

    @property
    def bytes_per_frame(self) -> int:
        """Memory per database row of the faiss index's own copy (ivf adds an 8-byte id); 0 for exact."""
        if self._faiss_index is None:
            return 0
        return self._faiss_index.code_size + (8 if self.kind == "ivf" else 0)

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.embeddings)
        k = min(check_k(k), n)  # faiss would answer k < 1 with a bare AssertionError
        if self.half_scan is not None:
            return exact_distances(queries, self.embeddings, self.half_scan.search(queries, k))
        if self.kind == "exact":
            return knn(queries, self.embeddings, k, self._keys_sq)
        _faiss().omp_set_num_threads(torch.get_num_threads())  # one setting for both libraries (rollout workers run one)
        _, idx = self._faiss_index.search(np.ascontiguousarray(queries.float().numpy()), k)
        idx = torch.from_numpy(idx)
        if (idx < 0).any():  # ivf visited cells holding fewer than k rows: fall back to exact for those queries
            bad = (idx < 0).any(1)
            idx[bad] = knn(queries[bad], self.embeddings, k)[1]
        return exact_distances(queries, self.embeddings, idx)


class RangeScan:
    """A single query over a filled faiss index split into one contiguous row range per thread (faiss scans one query
    on one thread), searched in parallel (faiss releases the GIL) and merged; a batch runs faiss's own threads over
    its queries. For flat-code indexes whose ids are row numbers (IndexScalarQuantizer)."""

    def __init__(self, index, threads: int | None = None) -> None:
        faiss = _faiss()
        self.index = index
        n = index.ntotal
        self.threads = max(1, min(threads or torch.get_num_threads(), n // 1024 or 1))
        bounds = np.linspace(0, n, self.threads + 1).astype(np.int64)
        self._ranges = []
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            selector = faiss.IDSelectorRange(int(lo), int(hi))
            selector.assume_sorted = True  # ids are row numbers: faiss skips straight to the range
            params = faiss.SearchParameters()
            params.sel = selector
            self._ranges.append((params, selector))  # the selector must outlive params
        self._pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None

    def search(self, queries: torch.Tensor, k: int) -> torch.Tensor:
        """(B, k) row indices of the k nearest rows of each (B, D) float32 query, ascending by distance."""
        q = np.ascontiguousarray(queries.float().numpy())
        k = min(k, self.index.ntotal)
        if self._pool is None or len(q) > 1:
            _faiss().omp_set_num_threads(torch.get_num_threads())  # a batch: faiss's threads over its queries
            return torch.from_numpy(self.index.search(q, k)[1])
        parts = list(self._pool.map(lambda r: self.index.search(q, k, params=r[0]), self._ranges))
        d = np.concatenate([p[0] for p in parts], axis=1)
        i = np.concatenate([p[1] for p in parts], axis=1)
        order = np.argsort(np.where(i >= 0, d, np.inf), axis=1, kind="stable")[:, :k]
        return torch.from_numpy(np.take_along_axis(i, order, axis=1))


class HalfScan(RangeScan):
    """Exact L2 search over float16 rows without float32 copies: faiss's SIMD fp16 scan (an IndexScalarQuantizer with
    QT_fp16 codes, i.e. the rows' IEEE halves, decoded and compared in float32 registers), in row ranges (RangeScan).

    `rows` is a zero-copy (N, D) float16 tensor view of the index's buffer, kept alive with it."""

    def __init__(self, embeddings: torch.Tensor, threads: int | None = None) -> None:
        faiss = _faiss()
        n, d = embeddings.shape
        index = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_L2)
        for part in embeddings.split(65536):  # fp16 -> fp32 -> fp16 is exact: the codes equal the rows
            index.add(np.ascontiguousarray(part.float().numpy()))
        buffer = (ctypes.c_uint8 * (n * d * 2)).from_address(int(index.codes.data()))
        buffer.owner = index  # the view keeps the index (and its memory) alive
        self.rows = torch.from_numpy(np.frombuffer(buffer, np.float16).reshape(n, d))
        super().__init__(index, threads)


def build_ivf(embeddings: torch.Tensor, nprobe: int | None = None, seed: int = 0, episode_ids: np.ndarray | None = None):
    """IVF over ~IVF_CELLS_PER_SQRT_N * sqrt(N) k-means cells trained on a sample of IVF_TRAIN_PER_CELL rows per cell;
    nprobe tuned unless given. A single query's cells are scanned in parallel (parallel_mode 1) on torch's threads."""
    faiss = _faiss()
    x = np.ascontiguousarray(embeddings.float().numpy())
    n, d = x.shape
    nlist = max(1, min(int(IVF_CELLS_PER_SQRT_N * math.sqrt(n)), n // IVF_TRAIN_PER_CELL))
    quantizer = faiss.IndexFlatL2(d)
    if embeddings.dtype == torch.float16:
        index = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_L2)
    else:
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_L2)
    index.cp.seed = seed
    index.parallel_mode = 1  # one query's cells over the threads (faiss's default splits only a batch's queries)
    sample = np.random.default_rng(seed).choice(n, min(n, IVF_TRAIN_PER_CELL * nlist), replace=False)
    index.train(x[np.sort(sample)])
    index.add(x)
    index.nprobe = min(nlist, nprobe or tune_nprobe(index, embeddings, nlist, seed, episode_ids))
    return index


def tune_nprobe(index, embeddings: torch.Tensor, nlist: int, seed: int = 0, episode_ids: np.ndarray | None = None,
                k: int = 10, queries: int = 200) -> int:
    """The smallest nprobe (in ~1.5x steps) reaching IVF_TARGET_RECALL for sampled database frames, each searched
    among the other episodes (every row is its own episode if none are given; one episode is cut into stretches)."""
    n = len(embeddings)
    groups = np.arange(n) if episode_ids is None else np.unique(np.asarray(episode_ids), return_inverse=True)[1]
    if groups.max() == 0:  # one episode: its stretches of SINGLE_EPISODE_STRETCH rows stand in for episodes
        groups = np.arange(n) // SINGLE_EPISODE_STRETCH
    rows = np.sort(np.random.default_rng(seed + 1).choice(n, min(queries, n), replace=False))
    q = np.ascontiguousarray(embeddings[rows].float().numpy())
    truth = knn_other_groups(rows, embeddings, k, groups, chunk=50)[1].numpy()
    span = int(np.bincount(groups).max())  # enough extra results to drop the query's own episode
    nprobe = 1
    while nprobe < nlist:
        index.nprobe = nprobe
        found = index.search(q, min(n, k + span))[1]
        others = [f[(f >= 0) & (groups[np.maximum(f, 0)] != groups[r])][: truth.shape[1]] for r, f in zip(rows, found, strict=True)]
        if recall(others, truth) >= IVF_TARGET_RECALL:
            return nprobe
        nprobe = max(nprobe + 1, int(nprobe * 1.5))
    return nlist


def recall(found: Sequence[np.ndarray], truth: np.ndarray) -> float:
    """Mean share of each query's true neighbours (truth rows) among its found ones (recall@k, k = truth.shape[1])."""
    return float(np.mean([len(np.intersect1d(f, t)) / len(t) for f, t in zip(found, truth, strict=True)]))
