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

from vinn_policy.lwr import knn, softmin_weights, squared_norms


@dataclass
class Neighbours:
    """The result of a query. B = queries, k = neighbours, A = action size."""

    actions: NDArray[np.float32]  # (B, A) blended actions
    indices: NDArray[np.int64]  # (B, k) rows of the database, nearest first
    distances: NDArray[np.float32]  # (B, k) ascending L2 distances
    weights: NDArray[np.float32]  # (B, k) softmin weights, rows sum to 1


def _as_array(name: str, x: object, dtype: type, ndim: int) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions; got shape {a.shape}.")
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric; got dtype {a.dtype}.")
    a = a.astype(dtype, copy=False)
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf values (first bad row {int(np.argmin(np.isfinite(a).all(axis=tuple(range(1, a.ndim)))))}).")
    return a


class EmbeddingDatabase:
    """Demonstration embeddings and actions, searched by exact L2 kNN and blended by softmin weights."""

    def __init__(
        self,
        embeddings: NDArray[np.floating],
        actions: NDArray[np.floating],
        episode_ids: NDArray[np.integer],
        frame_indices: NDArray[np.integer] | None = None,
        gripper_index: int | None = None,
    ) -> None:
        """
        Args:
            embeddings: (N, D) frame embeddings.
            actions: (N, A) the action taken at each frame.
            episode_ids: (N,) which demonstration each frame belongs to.
            frame_indices: (N,) position of each frame in its episode; derived from episode order if None.
            gripper_index: action dimension voted on as a binary gripper (see module docstring), or None
                to blend every dimension.
        """
        emb = _as_array("embeddings", embeddings, np.float32, 2)
        act = _as_array("actions", actions, np.float32, 2)
        ep = _as_array("episode_ids", episode_ids, np.int64, 1)
        n = len(emb)
        if n == 0:
            raise ValueError("The database is empty: expected at least one (embedding, action) row.")
        if len(act) != n or len(ep) != n:
            raise ValueError(f"embeddings, actions and episode_ids need the same length; got {n}, {len(act)}, {len(ep)}.")
        if frame_indices is None:
            frame_indices = np.zeros(n, np.int64)
            for e in np.unique(ep):
                rows = np.flatnonzero(ep == e)
                frame_indices[rows] = np.arange(len(rows))
        fi = _as_array("frame_indices", frame_indices, np.int64, 1)
        if len(fi) != n:
            raise ValueError(f"frame_indices needs length {n}; got {len(fi)}.")
        if gripper_index is not None and not -act.shape[1] <= gripper_index < act.shape[1]:
            raise ValueError(f"gripper_index {gripper_index} is outside the action's {act.shape[1]} dimensions.")
        self.embeddings = torch.from_numpy(emb.copy())  # (N, D)
        self.actions = torch.from_numpy(act.copy())  # (N, A)
        self.episode_ids = ep.copy()
        self.frame_indices = fi.copy()
        self.gripper_index = None if gripper_index is None else gripper_index % act.shape[1]
        self._keys_sq = squared_norms(self.embeddings)  # (N,)

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
        return knn(q, self.embeddings, k, self._keys_sq)

    def query(self, queries: NDArray[np.float32] | torch.Tensor, k: int, temperature: float = 1.0) -> Neighbours:
        """Blend the actions of the k nearest frames for each of the (B, D) queries (k clamped to N)."""
        dist, idx = self.search(queries, k)  # (B, k)
        actions, w = self.blend(dist, idx, temperature)
        return Neighbours(actions.numpy(), idx.numpy(), dist.numpy(), w.numpy())

    def blend(self, dist: torch.Tensor, idx: torch.Tensor, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, k) distances and row indices -> (B, A) actions and (B, k) softmin weights (gripper voted)."""
        w = softmin_weights(dist, temperature)  # (B, k)
        neigh = self.actions[idx]  # (B, k, A)
        blended = (w.unsqueeze(-1) * neigh).sum(1)  # (B, A)
        if self.gripper_index is not None:
            g = self.gripper_index
            lo, hi = self.actions[:, g].min(), self.actions[:, g].max()
            closed_weight = (w * (neigh[..., g] > (lo + hi) / 2)).sum(1)  # (B,)
            blended[:, g] = torch.where(closed_weight >= 0.5, hi, lo)
        return blended, w

    def tensors(self, prefix: str = "db.") -> dict[str, torch.Tensor]:
        return {
            prefix + "embeddings": self.embeddings,
            prefix + "actions": self.actions,
            prefix + "episode_ids": torch.from_numpy(self.episode_ids),
            prefix + "frame_indices": torch.from_numpy(self.frame_indices),
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], gripper_index: int | None, prefix: str = "db.") -> EmbeddingDatabase:
        return cls(
            tensors[prefix + "embeddings"].numpy(),
            tensors[prefix + "actions"].numpy(),
            tensors[prefix + "episode_ids"].numpy(),
            tensors[prefix + "frame_indices"].numpy(),
            gripper_index=gripper_index,
        )
