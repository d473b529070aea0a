"""Locally weighted regression: k nearest neighbours by L2 distance and the softmin-weighted mean.

Pure functions on torch tensors or numpy arrays (results come back in the caller's kind: numpy in, numpy out);
B = queries, N = database frames, D = embedding size, A = action size.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from numpy.typing import NDArray


def _as_tensor(x: object) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))


def _like(caller: object, *results: torch.Tensor) -> tuple:
    """Results as numpy arrays when the caller passed numpy (or lists), else as tensors."""
    return results if isinstance(caller, torch.Tensor) else tuple(r.numpy() for r in results)


def squared_norms(keys: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (N,) squared L2 norms; precompute once per database and pass to `knn`."""
    return (keys.float() * keys.float()).sum(dim=1)


def knn(
    query: torch.Tensor | NDArray, keys: torch.Tensor | NDArray, k: int, keys_sq: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor] | tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Exact k nearest neighbours by L2 distance.

    Args:
        query: (B, D) query embeddings, torch or numpy (the results come back in the same kind).
        keys: (N, D) database embeddings (float32 or float16; distances are computed in float32).
        k: neighbours per query. If k > N all N are returned (k is clamped to N, silently: asking for more
            neighbours than exist is legitimate for small databases).
        keys_sq: optional (N,) precomputed `squared_norms(keys)`.

    Returns:
        distances (B, min(k, N)) ascending, and indices (B, min(k, N)) into keys.
    """
    caller, query, keys = query, _as_tensor(query), _as_tensor(keys)
    check_k(k)
    if query.ndim != 2 or keys.ndim != 2 or query.shape[1] != keys.shape[1]:
        raise ValueError(f"Expected query (B, D) and keys (N, D) with the same D; got {tuple(query.shape)} and {tuple(keys.shape)}.")
    if keys.shape[0] == 0:
        raise ValueError("Cannot search an empty database (N = 0).")
    q = query.float()
    keys_sq = squared_norms(keys) if keys_sq is None else keys_sq
    k = min(k, keys.shape[0])
    # ||q - x||^2 = ||q||^2 - 2 q.x + ||x||^2, one matmul: memory-bound on keys, no (B, N, D) temporary.
    if keys.dtype == torch.float32 and keys.device.type == "cpu":
        idx = torch.from_numpy(nearest_rows(q.numpy(), keys.numpy(), keys_sq.numpy(), k))
    else:  # float16 (or GPU) keys: float32 products chunk by chunk (half-precision products reorder the neighbours)
        dots = torch.cat([q @ chunk.float().T for chunk in keys.split(4096)], dim=1)
        _, idx = torch.topk(-(keys_sq[None, :] - 2.0 * dots), k, dim=1)  # (B, k)
    return _like(caller, *exact_distances(q, keys, idx))


SINGLE_QUERY_BLAS_THREADS = 1
"""OpenBLAS threads of one query's GEMV (see nearest_rows; perf.py measures 1 against 2)."""


@functools.cache
def _blas_threads():
    """threadpoolctl's handle on the loaded BLAS libraries (numpy's OpenBLAS), found once."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas")


def nearest_rows(q: NDArray[np.float32], keys: NDArray[np.float32], keys_sq: NDArray[np.float32], k: int) -> NDArray[np.int64]:
    """(B, k) rows of keys with the smallest ||x||^2 - 2 q.x (the L2 ranking), unsorted, all in numpy.

    OpenBLAS's GEMV reads keys near the memory bound when they are laid out (D, N) (a transposed view: search.SearchIndex
    keeps them so), where torch's mv reads at a third of it (perf.md). One query's GEMV runs on one OpenBLAS thread
    (SINGLE_QUERY_BLAS_THREADS):
    idle OpenBLAS helpers spin for a while after each call and slowed the next act()'s encoder by more than the
    second thread saves. Staying in numpy for the selection keeps torch's threads out of it too."""
    if len(q) == 1:
        with _blas_threads().limit(limits=SINGLE_QUERY_BLAS_THREADS):
            s = keys @ q[0]
        s *= -2.0
        s += keys_sq
        s = s[None]
    else:
        s = q @ keys.T
        s *= -2.0
        s += keys_sq
    if k >= s.shape[1]:
        return np.argsort(s, axis=1)[:, :k]
    return np.argpartition(s, k - 1, axis=1)[:, :k]


def check_k(k: object) -> int:
    """k as an int >= 1 (numpy integers welcome); a ValueError naming it otherwise. Every search backend uses it."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k (neighbours per query) must be an integer >= 1; got {k!r}.")
    return int(k)


def knn_other_groups(rows: NDArray[np.integer], keys: torch.Tensor, k: int, groups: NDArray[np.integer],
                     chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact k nearest neighbours of the database's own rows, each among the rows of OTHER groups (episodes).

    Args:
        rows: (B,) query rows of keys. keys: (N, D) embeddings. groups: (N,) group of each row.
        k: neighbours per query, clamped to the rows outside the largest group.
        chunk: queries per (chunk, N) distance matrix (bounds memory).

    Returns:
        distances (B, k) ascending, and indices (B, k) into keys.
    """
    groups = np.asarray(groups)
    k = min(check_k(k), int(len(keys) - np.unique(groups, return_counts=True)[1].max()))
    keys = keys.float()
    keys_sq = squared_norms(keys)
    dist, idx = [], []
    for part in np.array_split(np.asarray(rows, np.int64), max(1, len(rows) // chunk)):
        q = keys[part]
        sq = (q * q).sum(1, keepdim=True) - 2.0 * (q @ keys.T) + keys_sq[None, :]  # (b, N)
        sq[torch.from_numpy(groups[part][:, None] == groups[None, :])] = float("inf")
        d, i = exact_distances(q, keys, torch.topk(-sq, k, dim=1).indices)
        dist.append(d)
        idx.append(i)
    return torch.cat(dist), torch.cat(idx)


def exact_distances(query: torch.Tensor, keys: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Direct L2 distances of (B, k) candidate rows, re-sorted ascending: (distances, indices).

    The one-matmul expansion picks the candidates fast but loses ~1e-3 absolute to cancellation after the
    sqrt; recomputing only the k winners costs B*k*D.
    """
    dist = (query.float()[:, None, :] - keys[idx].float()).norm(dim=-1)  # (B, k)
    dist, order = dist.sort(dim=1)
    return dist, idx.gather(1, order)


def softmin_weights(distances: torch.Tensor | NDArray, temperature: float = 1.0) -> torch.Tensor | NDArray:
    """(B, k) distances -> (B, k) weights exp(-d/T) / sum exp(-d/T), rows summing to 1 (torch or numpy, as given).

    Stable for any distance scale: the row minimum is subtracted before exponentiating.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature}.")
    d = _as_tensor(distances)
    z = -(d - d.min(dim=-1, keepdim=True).values) / temperature  # (B, k), max 0
    return _like(distances, torch.softmax(z, dim=-1))[0]


def softmin_blend(distances: torch.Tensor | NDArray, actions: torch.Tensor | NDArray,
                  temperature: float = 1.0) -> torch.Tensor | NDArray:
    """The locally weighted mean of neighbour actions.

    Args:
        distances: (B, k) or (k,) neighbour distances, torch or numpy (the result comes back in the same kind).
        actions: (B, k, A) or (k, A) neighbour actions.
        temperature: T in exp(-d/T); T -> 0 gives the nearest neighbour's action, T -> inf the plain mean.

    Returns:
        (B, A) or (A,) blended actions.
    """
    w = softmin_weights(_as_tensor(distances), temperature)  # (B, k)
    a = _as_tensor(actions)
    blended = (w.unsqueeze(-1).to(a.dtype if a.is_floating_point() else w.dtype) * a).sum(dim=-2)  # (B, A)
    return _like(distances, blended)[0]


# --- mode selection: the neighbours' actions as groups (VINNConfig.mode_selection, diagnostics.multimodality) ---


def translation(actions: NDArray, gripper_index: int | None) -> NDArray[np.float32]:
    """The action dimensions that are blended (all but the voted gripper), along the last axis."""
    return np.asarray(actions if gripper_index is None else np.delete(actions, gripper_index, axis=-1), np.float32)


def weighted_group_mean(actions: NDArray, weights: NDArray, member: NDArray[np.bool_]) -> NDArray[np.float64]:
    """(B, k, A) actions, (B, k) weights, (B, k) membership -> (B, A) weighted mean of each query's members."""
    wm = np.asarray(weights, np.float64) * member
    return (wm[..., None] * actions).sum(1) / np.maximum(wm.sum(1, keepdims=True), 1e-12)


def opposing_groups(neighbour_actions: NDArray, weights: NDArray, min_norm: float, min_share: float = 0.2,
                    iterations: int = 5) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Which queries' neighbour actions split into two opposing groups.

    Each query's (k, A) actions are split in two by weighted 2-means (started from the sign of the projection on
    the principal axis). The split is opposing when both groups hold at least `min_share` of the weight, both
    group means are at least `min_norm` long, and they point more than 90 degrees apart (cosine < 0): then the
    weighted mean cancels towards an action neither group took.

    Returns:
        (B,) flags, and (B, k) membership of each neighbour in the heavier group.
    """
    x = np.asarray(neighbour_actions, np.float64)  # (B, k, A)
    w = np.asarray(weights, np.float64)  # (B, k)
    centred = x - (w[..., None] * x).sum(1, keepdims=True)
    cov = np.einsum("bki,bkj->bij", w[..., None] * centred, centred)  # (B, A, A)
    axis = np.linalg.eigh(cov)[1][..., -1]  # (B, A) principal direction
    side = np.einsum("bka,ba->bk", centred, axis) > 0  # (B, k)
    for _ in range(iterations):
        ma, mb = weighted_group_mean(x, w, side), weighted_group_mean(x, w, ~side)
        side = ((x - ma[:, None]) ** 2).sum(-1) < ((x - mb[:, None]) ** 2).sum(-1)
    ma, mb = weighted_group_mean(x, w, side), weighted_group_mean(x, w, ~side)
    share_a = (w * side).sum(1)
    na, nb = np.linalg.norm(ma, axis=1), np.linalg.norm(mb, axis=1)
    cos = (ma * mb).sum(1) / np.maximum(na * nb, 1e-12)
    flags = (np.minimum(share_a, 1 - share_a) >= min_share) & (np.minimum(na, nb) >= min_norm) & (cos < 0)
    return flags, np.where((share_a >= 0.5)[:, None], side, ~side)


def typical_action_norm(actions: NDArray, gripper_index: int | None) -> float:
    """Median length of (N, A) actions' blended dimensions: the scale a 'real' motion is judged against."""
    return float(np.median(np.linalg.norm(translation(actions, gripper_index), axis=1)))
