"""The embedding database: demonstration frames as (embedding, action, episode id, frame index) rows.

A query returns the blended action and the neighbour set that produced it (indices, distances, weights),
so every action can be traced back to the demonstration frames behind it.

Gripper: if `gripper_index` is set, that action dimension is a binary open/close command and is decided by
a weighted vote: the neighbours' labels are split at the midpoint of the database's gripper range, and the
side holding at least half of the softmin weight wins, outputting that side's label value (e.g. -1 / +1).
With two label values this equals blend-then-threshold at the midpoint, but it always returns a crisp
command: a blended 0.1 would leave the fingers half closed, which no demonstration ever did.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from vinn_policy.actions import resolve_gripper_index
from vinn_policy.lwr import check_k, knn_other_groups, softmin_weights
from vinn_policy.search import INDEXES, STORAGES, SearchIndex, check_choice


@dataclass
class Neighbours:
    """The result of a query, traceable to demonstration frames. B = queries, k = neighbours, A = action size."""

    actions: NDArray[np.float32]  # (B, A) blended actions
    indices: NDArray[np.int64]  # (B, k) rows of the database, nearest first
    distances: NDArray[np.float32]  # (B, k) ascending L2 distances
    weights: NDArray[np.float32]  # (B, k) softmin weights, rows sum to 1
    episode_ids: NDArray[np.int64]  # (B, k) demonstration of each neighbour
    frame_indices: NDArray[np.int64]  # (B, k) position of each neighbour in its demonstration
    neighbour_actions: NDArray[np.float32]  # (B, k, A) the action each neighbour's demonstration took there

    def rows(self, query: int = 0) -> list[dict]:
        """One dict per neighbour of one query (episode, frame, distance, weight, action): for logs and JSON."""
        return [{"episode": int(e), "frame": int(f), "distance": float(d), "weight": float(w), "action": a.tolist()}
                for e, f, d, w, a in zip(self.episode_ids[query], self.frame_indices[query], self.distances[query],
                                         self.weights[query], self.neighbour_actions[query], strict=True)]


def _as_array(name: str, x: object, dtype: type, ndim: int) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions; got shape {a.shape}.")
    if a.dtype.kind not in "iuf":  # booleans are refused too: True/False embeddings or ids are a caller's mistake
        raise ValueError(f"{name} must be numeric (integer or float); got dtype {a.dtype}.")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf values (first bad row {int(np.argmin(np.isfinite(a).all(axis=tuple(range(1, a.ndim)))))}).")
    if np.dtype(dtype).kind == "i" and a.dtype.kind == "f" and (a != np.round(a)).any():
        bad = a[a != np.round(a)]
        raise ValueError(f"{name} must be integer-valued (truncating {bad[0]!r} would merge rows that differ); "
                         f"got {len(bad)} non-integer values.")
    return a.astype(dtype, copy=False)


def check_rows(actions: object, episode_ids: object, frame_indices: object = None,
               gripper_index: int | None = None) -> tuple[NDArray[np.float32], NDArray[np.int64], NDArray[np.int64], int | None]:
    """Validate a database's per-frame columns before anything costly (embedding) happens.

    Returns:
        (actions (N, A) float32, episode_ids (N,) int64, frame_indices (N,) int64 (derived per episode if None),
        gripper_index resolved to a non-negative dimension or None).

    Raises:
        ValueError: non-finite actions, non-integer or boolean ids, mismatched lengths, gripper_index outside A.
    """
    act = _as_array("actions", actions, np.float32, 2)
    ep = _as_array("episode_ids", episode_ids, np.int64, 1)
    n = len(act)
    if len(ep) != n:
        raise ValueError(f"actions and episode_ids need the same length; got {n} and {len(ep)}.")
    if frame_indices is None:
        frame_indices = np.zeros(n, np.int64)
        for e in np.unique(ep):
            rows = np.flatnonzero(ep == e)
            frame_indices[rows] = np.arange(len(rows))
    fi = _as_array("frame_indices", frame_indices, np.int64, 1)
    if len(fi) != n:
        raise ValueError(f"frame_indices needs length {n}; got {len(fi)}.")
    return act, ep, fi, resolve_gripper_index(gripper_index, act.shape[1])


class EmbeddingDatabase:
    """Demonstration embeddings and actions, searched by L2 kNN (vinn_policy.search) and blended by softmin weights."""

    def __init__(
        self,
        embeddings: NDArray[np.floating],
        actions: NDArray[np.floating],
        episode_ids: NDArray[np.integer],
        frame_indices: NDArray[np.integer] | None = None,
        gripper_index: int | None = None,
        index: str = "auto",
        storage: str = "float32",
    ) -> None:
        """
        Args:
            embeddings: (N, D) frame embeddings.
            actions: (N, A) the action taken at each frame.
            episode_ids: (N,) which demonstration each frame belongs to.
            frame_indices: (N,) position of each frame in its episode; derived from episode order if None.
            gripper_index: action dimension voted on as a binary gripper (see module docstring), or None
                to blend every dimension.
            index: search backend, "auto" | "exact" | "flat" | "ivf" (see vinn_policy.search); built on first search.
            storage: "float32", or "float16" (half the memory and bytes read per query; effect in perf.md).
        """
        emb = _as_array("embeddings", embeddings, np.float32, 2)
        n = len(emb)
        if n == 0:
            raise ValueError("The database is empty: expected at least one (embedding, action) row.")
        act, ep, fi, gripper_index = check_rows(actions, episode_ids, frame_indices, gripper_index)
        if len(act) != n:
            raise ValueError(f"embeddings, actions and episode_ids need the same length; got {n}, {len(act)}, {len(ep)}.")
        self.index_kind, self.storage = check_choice("index", index, INDEXES), check_choice("storage", storage, STORAGES)
        if storage == "float16" and np.abs(emb).max() > np.finfo(np.float16).max:
            raise ValueError("Embeddings exceed float16's range (|x| > 65504); use storage='float32'.")
        self.embeddings = torch.from_numpy(emb.astype(storage))  # (N, D), a copy
        self.actions = torch.from_numpy(act.copy())  # (N, A)
        self.episode_ids = ep.copy()
        self.frame_indices = fi.copy()
        self.gripper_index = gripper_index
        if gripper_index is not None:  # the gripper's two commands, once: a per-query scan of the column cost 5 ms at 100k frames
            column = self.actions[:, gripper_index]
            self._gripper_levels = (column.min(), column.max())
        self._index: SearchIndex | None = None  # built on first search: LOEO, extend etc. never need it
        self._order: NDArray[np.int64] | None = None  # for successors(), built on first use
        self._place: NDArray[np.int64] | None = None

    def __len__(self) -> int:
        return self.embeddings.shape[0]

    @property
    def embedding_dim(self) -> int:
        return self.embeddings.shape[1]

    @property
    def action_dim(self) -> int:
        return self.actions.shape[1]

    def search(self, queries: NDArray[np.float32] | torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, k) ascending L2 distances and row indices of the k nearest frames of each (B, D) query (k clamped to N)."""
        q = torch.as_tensor(queries, dtype=torch.float32)
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2 or q.shape[1] != self.embedding_dim:
            raise ValueError(f"Expected queries of shape (B, {self.embedding_dim}); got {tuple(q.shape)}.")
        if not torch.isfinite(q).all():
            raise ValueError("Query embeddings contain NaN or inf.")
        return self.index.search(q, k)

    @property
    def index(self) -> SearchIndex:
        """The search index (built on first use; `.kind` resolves "auto")."""
        if self._index is None:
            self._index = SearchIndex(self.embeddings, self.index_kind, episode_ids=self.episode_ids)
            self.embeddings = self._index.embeddings  # exact search holds the rows in its own layout (transposed, or HalfScan's buffer)
        return self._index

    def query(self, queries: NDArray[np.float32] | torch.Tensor, k: int, temperature: float = 1.0) -> Neighbours:
        """Blend the actions of the k nearest frames for each of the (B, D) queries (k clamped to N)."""
        dist, idx = self.search(queries, k)  # (B, k)
        actions, w = self.blend(dist, idx, temperature)
        rows = idx.numpy()
        return Neighbours(actions.numpy(), rows, dist.numpy(), w.numpy(), self.episode_ids[rows], self.frame_indices[rows],
                          self.actions.numpy()[rows])

    def held_out_rows(self, max_queries: int = 2000, seed: int = 0) -> NDArray[np.int64]:
        """All rows, or a seeded sorted sample of max_queries of them: the queries of `leave_one_episode_out`."""
        rows = np.arange(len(self))
        return np.sort(np.random.default_rng(seed).choice(rows, max_queries, replace=False)) if len(rows) > max_queries else rows

    def leave_one_episode_out(self, k: int, temperature: float = 1.0, max_queries: int = 2000, seed: int = 0,
                              rows: NDArray[np.integer] | None = None) -> Neighbours:
        """Neighbours of (a seeded sample of) the database's own frames, each searched among the OTHER episodes.

        This is how far, and how consistent, neighbours are for a frame the database has not seen from the
        same demonstration: the reference against which query distances are judged. `rows` overrides the sample.
        """
        check_k(k)
        if len(np.unique(self.episode_ids)) < 2:
            raise ValueError("Leave-one-episode-out needs at least 2 episodes in the database.")
        rows = self.held_out_rows(max_queries, seed) if rows is None else np.asarray(rows, np.int64)
        d, i = knn_other_groups(rows, self.embeddings, k, self.episode_ids)
        actions, w = self.blend(d, i, temperature)
        r = i.numpy()
        return Neighbours(actions.numpy(), r, d.numpy(), w.numpy(), self.episode_ids[r], self.frame_indices[r], self.actions.numpy()[r])

    def extend(self, embeddings: NDArray[np.floating], actions: NDArray[np.floating], episode_ids: NDArray[np.integer],
               frame_indices: NDArray[np.integer] | None = None) -> EmbeddingDatabase:
        """A database with these rows appended; their episode ids must be new (no retraining involved)."""
        new = EmbeddingDatabase(embeddings, actions, episode_ids, frame_indices, self.gripper_index, self.index_kind, self.storage)
        clash = np.intersect1d(np.unique(new.episode_ids), np.unique(self.episode_ids))
        if len(clash):
            raise ValueError(f"Episode ids {clash[:10].tolist()} are already in the database; give added demos new ids.")
        if new.embedding_dim != self.embedding_dim or new.action_dim != self.action_dim:
            raise ValueError(f"Added rows are ({new.embedding_dim}-d embeddings, {new.action_dim}-d actions); "
                             f"the database holds ({self.embedding_dim}, {self.action_dim}).")
        return EmbeddingDatabase(torch.cat([self.embeddings, new.embeddings]).numpy(), torch.cat([self.actions, new.actions]).numpy(),
                                 np.concatenate([self.episode_ids, new.episode_ids]),
                                 np.concatenate([self.frame_indices, new.frame_indices]), self.gripper_index, self.index_kind, self.storage)

    def without_episodes(self, episode_ids: object) -> EmbeddingDatabase:
        """A database without the rows of these episodes (all must be present; at least one row must remain)."""
        drop = np.unique(_as_array("episode_ids", np.atleast_1d(episode_ids), np.int64, 1))
        missing = np.setdiff1d(drop, self.episode_ids)
        if len(missing):
            raise ValueError(f"Episode ids {missing[:10].tolist()} are not in the database.")
        keep = np.flatnonzero(~np.isin(self.episode_ids, drop))
        if len(keep) == 0:
            raise ValueError("Removing these episodes would empty the database.")
        return EmbeddingDatabase(self.embeddings.numpy()[keep], self.actions.numpy()[keep], self.episode_ids[keep],
                                 self.frame_indices[keep], self.gripper_index, self.index_kind, self.storage)

    def successors(self, rows: NDArray[np.integer], steps: int) -> NDArray[np.int64]:
        """(...,) rows -> (..., steps): each row's own demonstration at frames f, f + 1, ..., f + steps - 1 (the row
        itself first), -1 from where that demonstration ends (or skips a frame) on."""
        if self._order is None:  # rows sorted by (episode, frame), and each row's place in that order
            self._order = np.lexsort((self.frame_indices, self.episode_ids))
            self._place = np.empty_like(self._order)
            self._place[self._order] = np.arange(len(self._order))
        rows = np.asarray(rows, np.int64)
        place = self._place[rows][..., None] + np.arange(steps)  # (..., steps)
        candidate = self._order[np.minimum(place, len(self) - 1)]
        same = ((place < len(self)) & (self.episode_ids[candidate] == self.episode_ids[rows][..., None])
                & (self.frame_indices[candidate] == self.frame_indices[rows][..., None] + np.arange(steps)))
        return np.where(np.cumprod(same, axis=-1).astype(bool), candidate, -1)

    def blend(self, dist: torch.Tensor, idx: torch.Tensor, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, k) distances and row indices -> (B, A) actions and (B, k) softmin weights (gripper voted)."""
        w = softmin_weights(dist, temperature)  # (B, k)
        return self.combine(w, idx), w

    def combine(self, w: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """(B, k) weights (rows summing to 1) over (B, k) rows -> (B, A) weighted-mean actions, gripper voted."""
        neigh = self.actions[idx]  # (B, k, A)
        blended = (w.unsqueeze(-1) * neigh).sum(1)  # (B, A)
        if self.gripper_index is not None:
            g = self.gripper_index
            lo, hi = self._gripper_levels
            closed_weight = (w * (neigh[..., g] > (lo + hi) / 2)).sum(1)  # (B,)
            blended[:, g] = torch.where(closed_weight >= 0.5, hi, lo)
        return blended

    def tensors(self, prefix: str = "db.") -> dict[str, torch.Tensor]:
        return {
            prefix + "embeddings": self.embeddings.contiguous(),  # exact search keeps them transposed in memory
            prefix + "actions": self.actions,
            prefix + "episode_ids": torch.from_numpy(self.episode_ids),
            prefix + "frame_indices": torch.from_numpy(self.frame_indices),
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], gripper_index: int | None, prefix: str = "db.",
                     index: str = "auto") -> EmbeddingDatabase:
        """The inverse of `tensors`; storage follows the saved embeddings' dtype."""
        emb = tensors[prefix + "embeddings"]
        return cls(
            emb.numpy(),
            tensors[prefix + "actions"].numpy(),
            tensors[prefix + "episode_ids"].numpy(),
            tensors[prefix + "frame_indices"].numpy(),
            gripper_index=gripper_index,
            index=index,
            storage="float16" if emb.dtype == torch.float16 else "float32",
        )
