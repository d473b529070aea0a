"""Nearest-neighbour search backends of the embedding database.

    exact  torch brute force (lwr.knn): reads every stored embedding once per query. Fastest up to ~100k
           frames here (0.7 ms at 10k, near the memory-bandwidth bound; see benchmarks/results/perf.md).
    flat   faiss IndexFlatL2: the same exact answer through faiss (slower than torch for single queries
           on this CPU; there for comparison and for faiss users).
    ivf    faiss IndexIVFFlat: approximate; k-means splits the database into `nlist` cells and a query visits
           the `nprobe` nearest. ~sqrt(N) cells. Recall is measured in perf.py, not assumed.
    auto   exact below AUTO_IVF_FRAMES frames, ivf from there on.

Every backend only proposes candidate rows; their distances are then recomputed exactly from the database's
own embeddings (lwr.exact_distances), so softmin weights and provenance do not depend on the backend.
float16 storage: exact search multiplies in half precision (half the bytes read); ivf stores fp16 codes.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vinn_policy.lwr import exact_distances, knn, squared_norms

INDEXES = ("auto", "exact", "flat", "ivf")
STORAGES = ("float32", "float16")
AUTO_IVF_FRAMES = 200_000
"""From here on "auto" uses ivf: exact search reaches ~20 ms per query at 200k x 512 float32 on this CPU."""


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

    def __init__(self, embeddings: torch.Tensor, kind: str = "auto", nprobe: int | None = None, seed: int = 0) -> None:
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
            self._faiss_index = build_ivf(embeddings, nprobe, seed)

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
        k = min(k, n)
        if self.kind == "exact":
            return knn(queries, self.embeddings, k, self._keys_sq)
        _, idx = self._faiss_index.search(np.ascontiguousarray(queries.float().numpy()), k)
        idx = torch.from_numpy(idx)
        if (idx < 0).any():  # ivf visited cells holding fewer than k rows: fall back to exact for those queries
            bad = (idx < 0).any(1)
            idx[bad] = knn(queries[bad], self.embeddings, k)[1]
        return exact_distances(queries, self.embeddings, idx)


def build_ivf(embeddings: torch.Tensor, nprobe: int | None = None, seed: int = 0):
    """IVF over ~sqrt(N) k-means cells trained on a 40-per-cell sample; nprobe defaults to nlist / 16 (>= 8)."""
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
    index.nprobe = min(nlist, nprobe or max(8, nlist // 16))
    return index
