"""Nearest-neighbour search backends of the embedding database.

    exact  torch brute force (lwr.knn): reads every stored embedding once per query. Fastest up to ~100k
           frames here (0.7 ms at 10k, near the memory-bandwidth bound; see benchmarks/results/perf.md).
    flat   faiss IndexFlatL2: the same exact answer through faiss (slower than torch for single queries
           on this CPU; there for comparison and for faiss users).
    ivf    faiss IndexIVFFlat: approximate; k-means splits the database into ~sqrt(N) cells and a query visits
           the `nprobe` nearest, tuned at build time to IVF_TARGET_RECALL on the database's own frames.
           Recall on held-out queries is measured in perf.py.
    auto   exact below AUTO_IVF_FRAMES frames, ivf from there on.

Every backend only proposes candidate rows; their distances are then recomputed exactly from the database's
own embeddings (lwr.exact_distances), so softmin weights and provenance do not depend on the backend.
float16 storage halves memory, not time: exact search converts chunks to float32 on the fly (~1.5x slower
than float32 here, perf.md); ivf stores fp16 codes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from vinn_policy.lwr import check_k, exact_distances, knn, knn_other_groups, squared_norms

INDEXES = ("auto", "exact", "flat", "ivf")
STORAGES = ("float32", "float16")
AUTO_IVF_FRAMES = 100_000
"""From here on "auto" uses ivf: exact search over 100k x 512 float32 takes ~9 ms here, as long as the encoder."""
IVF_TARGET_RECALL = 0.97
"""nprobe is the smallest that finds this share of the exact 10 nearest neighbours of sampled database frames
among the other episodes (as for a frame of a new episode)."""


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
        self._keys_sq = squared_norms(embeddings) if self.kind == "exact" else None
        self._faiss_index = None
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
        if self.kind == "exact":
            return knn(queries, self.embeddings, k, self._keys_sq)
        _, idx = self._faiss_index.search(np.ascontiguousarray(queries.float().numpy()), k)
        idx = torch.from_numpy(idx)
        if (idx < 0).any():  # ivf visited cells holding fewer than k rows: fall back to exact for those queries
            bad = (idx < 0).any(1)
            idx[bad] = knn(queries[bad], self.embeddings, k)[1]
        return exact_distances(queries, self.embeddings, idx)


def build_ivf(embeddings: torch.Tensor, nprobe: int | None = None, seed: int = 0, episode_ids: np.ndarray | None = None):
    """IVF over ~sqrt(N) k-means cells trained on a 40-per-cell sample; nprobe tuned unless given."""
    faiss = _faiss()
    x = np.ascontiguousarray(embeddings.float().numpy())
    n, d = x.shape
    nlist = max(1, min(int(math.sqrt(n)), n // 40))
    quantizer = faiss.IndexFlatL2(d)
    if embeddings.dtype == torch.float16:
        index = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_L2)
    else:
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_L2)
    index.cp.seed = seed
    sample = np.random.default_rng(seed).choice(n, min(n, 40 * nlist), replace=False)
    index.train(x[np.sort(sample)])
    index.add(x)
    index.nprobe = min(nlist, nprobe or tune_nprobe(index, embeddings, nlist, seed, episode_ids))
    return index


def tune_nprobe(index, embeddings: torch.Tensor, nlist: int, seed: int = 0, episode_ids: np.ndarray | None = None,
                k: int = 10, queries: int = 200) -> int:
    """The smallest nprobe (in ~1.5x steps) reaching IVF_TARGET_RECALL for sampled database frames, each searched
    among the other episodes (every row is its own episode if none are given)."""
    n = len(embeddings)
    groups = np.arange(n) if episode_ids is None else np.unique(np.asarray(episode_ids), return_inverse=True)[1]
    if groups.max() == 0:  # one episode: no other episode to search among, so every row is its own
        groups = np.arange(n)
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
