"""Splitting demonstrations by episode (frames of one episode never straddle two splits)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def split_episodes(episode_ids: NDArray[np.integer], held_out_fraction: float, seed: int = 0) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Rows of (kept, held-out) episodes; at least one episode on each side.

    Args:
        episode_ids: (N,) episode of each frame.
        held_out_fraction: share of episodes (not frames) held out, rounded, clamped to [1, E - 1].
    Returns:
        (kept_rows, held_out_rows): int64 row indices, each in ascending order.
    """
    episodes = np.unique(episode_ids)
    if len(episodes) < 2:
        raise ValueError(f"Need at least 2 episodes to split by episode; got {len(episodes)}.")
    n_out = int(np.clip(round(held_out_fraction * len(episodes)), 1, len(episodes) - 1))
    held_out = np.random.default_rng(seed).permutation(episodes)[:n_out]
    mask = np.isin(episode_ids, held_out)
    return np.flatnonzero(~mask), np.flatnonzero(mask)
