"""Random baseline: uniform actions, reproducible per episode seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from vinn_policy.artefact import load_artefact, save_artefact


class RandomPolicy:
    """Uniform random actions in [low, high]^A; reset(seed=s) makes the episode's actions a function of (seed, s)."""

    uses_images = False  # rollouts skip rendering the camera for it

    def __init__(self, action_dim: int = 4, low: float = -1.0, high: float = 1.0, seed: int = 0) -> None:
        if action_dim < 1 or not low < high:
            raise ValueError(f"Need action_dim >= 1 and low < high; got {action_dim}, {low}, {high}.")
        self.action_dim, self.low, self.high, self.seed = action_dim, low, high, seed
        self.rng = np.random.default_rng(seed)

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng([self.seed, seed])

    def act(self, obs: object) -> NDArray[np.float32]:
        return self.rng.uniform(self.low, self.high, self.action_dim).astype(np.float32)

    def save(self, path: str | Path) -> Path:
        meta = {"action_dim": self.action_dim, "low": self.low, "high": self.high, "seed": self.seed}
        return save_artefact(path, "random_policy", {}, meta)

    @classmethod
    def load(cls, path: str | Path) -> RandomPolicy:
        _, meta = load_artefact(path, "random_policy")
        return cls(meta["action_dim"], meta["low"], meta["high"], meta["seed"])
