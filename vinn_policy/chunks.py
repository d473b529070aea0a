"""Chunked retrieval (VINNConfig.chunk > 1): each query's neighbours followed through their demonstrations.

A query's k neighbours each contribute their demonstration's next H actions (cut where it ends); step by step these
are blended with the query's softmin weights, renormalised over the neighbours still running (the gripper voted),
and the plan runs open-loop until it ends or the scene drifts from the frames it expected (VINNPolicy.drift).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from vinn_policy.database import EmbeddingDatabase, Neighbours


@dataclass
class ChunkPlan:
    """The open-loop plans of B queries (VINNConfig.chunk > 1): what each does at every step until it queries again."""

    actions: NDArray[np.float32]  # (B, H, A) the blended action of each step
    rows: NDArray[np.int64]  # (B, k, H) each neighbour's demonstration frame at each step (-1: it has ended)
    weights: NDArray[np.float32]  # (B, k, H) the softmin weights renormalised over the neighbours still running
    length: NDArray[np.int64]  # (B,) steps each plan has (>= 1: a neighbour's own action comes first)
    step: NDArray[np.int64]  # (B,) the step being executed
    neighbours: Neighbours  # the query behind each plan

    def replaced(self, where: NDArray[np.bool_], fresh: ChunkPlan) -> ChunkPlan:
        """This plan with the queries at `where` replaced by `fresh` (one entry per True)."""
        def merge(old: np.ndarray, new: np.ndarray) -> np.ndarray:
            out = old.copy()
            out[where] = new
            return out

        nb = Neighbours(**{f: merge(getattr(self.neighbours, f), getattr(fresh.neighbours, f)) for f in vars(self.neighbours)})
        return ChunkPlan(*(merge(getattr(self, f), getattr(fresh, f)) for f in ("actions", "rows", "weights", "length", "step")), nb)

    @classmethod
    def follow(cls, database: EmbeddingDatabase, nb: Neighbours, chunk: int) -> ChunkPlan:
        """Each query's neighbours followed through their demonstrations for `chunk` steps, blended step by step."""
        rows = database.successors(nb.indices, chunk)  # (B, k, H)
        weights = nb.weights[..., None] * (rows >= 0)
        total = weights.sum(1, keepdims=True)
        weights = np.divide(weights, total, out=np.zeros_like(weights), where=total > 0).astype(np.float32)
        b, k, h = rows.shape
        flat_weights = torch.from_numpy(weights.transpose(0, 2, 1).reshape(-1, k))  # (B * H, k)
        flat_rows = torch.from_numpy(np.maximum(rows, 0).transpose(0, 2, 1).reshape(-1, k))
        actions = database.combine(flat_weights, flat_rows).numpy().reshape(b, h, -1)
        return cls(actions, rows, weights, (total[:, 0] > 0).sum(-1), np.zeros(b, np.int64), nb)

    def sources(self, database: EmbeddingDatabase, query: int = 0) -> list[dict]:
        """Where one query's current step comes from: each neighbour still running (episode, frame, weight, action)."""
        rows, weights = self.rows[query, :, self.step[query]], self.weights[query, :, self.step[query]]
        return [{"episode": int(database.episode_ids[r]), "frame": int(database.frame_indices[r]), "weight": float(w),
                 "action": database.actions[r].tolist()} for r, w in zip(rows, weights, strict=True) if r >= 0]

    def distance_to_expected(self, database: EmbeddingDatabase, keys: NDArray[np.float32]) -> NDArray[np.float64]:
        """(B,) weighted distance of each query's current key to the frames its plan expected at this step."""
        b = np.arange(len(keys))
        step = np.minimum(self.step, self.rows.shape[-1] - 1)
        rows, weights = np.maximum(self.rows[b, :, step], 0), self.weights[b, :, step]  # (B, k)
        expected = database.embeddings[torch.from_numpy(rows)].float()  # (B, k, D)
        distance = torch.linalg.norm(expected - torch.from_numpy(keys)[:, None], dim=-1).numpy()
        return (weights * distance).sum(1)
