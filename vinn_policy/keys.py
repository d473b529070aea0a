"""Search keys made of more than one block: several camera views and, optionally, proprioception.

The paper's VINN searches one camera's embedding. A multi-block key concatenates each view's embedding (one
encoder per view, or one shared) and, with `proprio_weight` > 0, the standardised proprioception. Every block
is divided by its own typical neighbour distance -- the median distance from a demonstration frame to its
nearest frame in the *other* demonstrations -- so no block dominates by the scale of its features, then
multiplied by the first view's typical distance, so distances and VINN's softmin temperature keep the first
view's units. Proprioception's block is weighted by `proprio_weight` on top (1: as much as one view).

    layout = KeyLayout.fit(embeddings_by_view, episode_ids, views=("image", "agentview_image"))
    keys = layout.key(embeddings_by_view, proprio)
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from vinn_policy.lwr import knn_other_groups

PROPRIO_KEYS = ("robot0_eef_pos", "robot0_gripper_qpos")
"""The proprioception a robosuite env (and its demo files) carries: gripper position and finger joints."""


def typical_distance(embeddings: NDArray[np.floating], episode_ids: NDArray[np.integer], max_queries: int = 2000,
                     seed: int = 0) -> float:
    """Median distance from (a seeded sample of) the rows to their nearest row in another episode."""
    episode_ids = np.asarray(episode_ids)
    if len(np.unique(episode_ids)) < 2:
        raise ValueError("A block's typical neighbour distance needs demonstrations from at least 2 episodes.")
    rows = np.arange(len(embeddings))
    if len(rows) > max_queries:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_queries, replace=False))
    d, _ = knn_other_groups(rows, torch.from_numpy(np.ascontiguousarray(embeddings, np.float32)), 1, episode_ids)
    return max(float(np.median(d.numpy())), 1e-8)  # a block of identical rows must not divide by zero


@dataclass(frozen=True)
class KeyLayout:
    """How per-view embeddings and proprioception become one search key (see the module docstring)."""

    views: tuple[str, ...]
    """Observation keys of the camera images, in key order; act() reads each from the observation dict."""
    view_scales: tuple[float, ...]
    """Multiplier of each view's embedding (the first view's typical distance over this view's)."""
    proprio_keys: tuple[str, ...] = ()
    """Observation keys concatenated into the proprioception block (empty: no block)."""
    proprio_mean: tuple[float, ...] = ()
    proprio_scale: tuple[float, ...] = ()
    """Per dimension: (value - mean) * scale, the weight and the block's typical distance folded in."""

    def __post_init__(self) -> None:
        if not self.views or len(set(self.views)) != len(self.views) or not all(isinstance(v, str) and v for v in self.views):
            raise ValueError(f"views must be distinct non-empty observation keys; got {self.views!r}.")
        if len(self.view_scales) != len(self.views) or not all(_positive(s) for s in self.view_scales):
            raise ValueError(f"view_scales must hold one finite number > 0 per view {self.views}; got {self.view_scales!r}.")
        if len(self.proprio_mean) != len(self.proprio_scale) or (self.proprio_keys and not self.proprio_mean):
            raise ValueError("proprio_mean and proprio_scale must have one entry per proprioception dimension.")
        if not all(np.isfinite(v) for v in (*self.proprio_mean, *self.proprio_scale)):
            raise ValueError("proprio_mean and proprio_scale must be finite.")
        object.__setattr__(self, "views", tuple(self.views))
        object.__setattr__(self, "view_scales", tuple(float(s) for s in self.view_scales))
        object.__setattr__(self, "proprio_keys", tuple(self.proprio_keys))
        object.__setattr__(self, "proprio_mean", tuple(float(v) for v in self.proprio_mean))
        object.__setattr__(self, "proprio_scale", tuple(float(v) for v in self.proprio_scale))

    @classmethod
    def fit(cls, embeddings: Sequence[NDArray[np.floating]], episode_ids: NDArray[np.integer], views: Sequence[str],
            proprio: NDArray[np.floating] | None = None, proprio_keys: Sequence[str] = PROPRIO_KEYS,
            proprio_weight: float = 0.0) -> KeyLayout:
        """The layout for these demonstration rows: each view's (N, D_v) embeddings and, if proprio_weight > 0,
        their (N, P) proprioception (the `proprio_keys` concatenated in order)."""
        if len(embeddings) != len(views):
            raise ValueError(f"Got embeddings of {len(embeddings)} views for the views {tuple(views)}; expected one per view.")
        if not (isinstance(proprio_weight, numbers.Real) and np.isfinite(proprio_weight) and proprio_weight >= 0):
            raise ValueError(f"proprio_weight must be a finite number >= 0; got {proprio_weight!r}.")
        scales = [typical_distance(e, episode_ids) for e in embeddings]
        unit = scales[0]
        if proprio_weight == 0:
            return cls(tuple(views), tuple(unit / s for s in scales))
        if proprio is None or not proprio_keys:
            raise ValueError("proprio_weight > 0 needs the demonstrations' proprioception (proprio=) and proprio_keys.")
        proprio = np.asarray(proprio, np.float64)
        if proprio.ndim != 2 or len(proprio) != len(embeddings[0]) or not np.isfinite(proprio).all():
            raise ValueError(f"proprio must be a finite (N, P) array with one row per frame ({len(embeddings[0])}); got {proprio.shape}.")
        mean, std = proprio.mean(0), proprio.std(0)
        std = np.where(std > 1e-8, std, np.inf)  # a dimension that never moves carries nothing
        z = (proprio - mean) / std
        block = typical_distance(z, episode_ids)
        return cls(tuple(views), tuple(unit / s for s in scales), tuple(proprio_keys), tuple(mean),
                   tuple(proprio_weight * unit / block / std))

    def key(self, embeddings: Sequence[NDArray[np.floating]], proprio: NDArray[np.floating] | None = None) -> NDArray[np.float32]:
        """(B, D) search keys from each view's (B, D_v) embeddings and, with a proprioception block, (B, P) proprio."""
        parts = [np.asarray(e, np.float32) * np.float32(s) for e, s in zip(embeddings, self.view_scales, strict=True)]
        if self.proprio_keys:
            proprio = np.asarray(proprio, np.float64)
            if proprio.ndim != 2 or proprio.shape[1] != len(self.proprio_mean):
                raise ValueError(f"Expected ({len(parts[0])}, {len(self.proprio_mean)}) proprioception from {self.proprio_keys}; "
                                 f"got shape {proprio.shape}.")
            parts.append(((proprio - self.proprio_mean) * self.proprio_scale).astype(np.float32))
        return np.concatenate(parts, axis=1)

    def proprio_from(self, obs: dict, batched: bool) -> NDArray[np.float64]:
        """The proprioception block's raw (B, P) values from an observation dict (B = 1 unless batched)."""
        missing = [k for k in self.proprio_keys if k not in obs]
        if missing:
            raise ValueError(f"Observation dict lacks the proprioception keys {missing} this policy's key uses; keys: {sorted(obs)}.")
        parts = [np.asarray(obs[k], np.float64) for k in self.proprio_keys]
        return np.concatenate([p if batched else p.reshape(1, -1) for p in parts], axis=-1)

    def meta(self) -> dict:
        return asdict(self)


def _positive(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and bool(np.isfinite(x)) and x > 0
