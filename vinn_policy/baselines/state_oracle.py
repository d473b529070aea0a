"""The state oracle: VINN's locally weighted regression over privileged simulator state instead of images.

Not a baseline in the benchmark table: its success is what a perfect encoder would allow with the same
demonstrations, so any gap between it and VINN is the representation's.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from vinn_policy.database import EmbeddingDatabase


def state_features(obs: dict[str, NDArray], objects: tuple[str, ...]) -> NDArray[np.float32]:
    """(..., 3 * len(objects) + 2) the state oracle's embedding, in cm: each object position relative to the
    gripper (robot0_eef_pos), then the finger joints (robot0_gripper_qpos)."""
    missing = [key for key in ("robot0_eef_pos", *objects, "robot0_gripper_qpos") if key not in obs]
    if missing:
        raise ValueError(f"The state oracle needs the privileged observation keys {missing}; got {sorted(obs)}.")
    eef = np.asarray(obs["robot0_eef_pos"])
    parts = [np.asarray(obs[key]) - eef for key in objects] + [np.asarray(obs["robot0_gripper_qpos"])]
    return (100 * np.concatenate(parts, -1)).astype(np.float32)


class StateKNNPolicy:
    """An oracle, not a baseline: VINN's locally weighted regression (k nearest by L2, softmin weights, gripper
    vote) over state_features instead of image embeddings. Its success is what a perfect encoder would allow
    with the same demonstrations. Needs the simulator's privileged keys in every observation."""

    uses_images = False

    def __init__(self, features: NDArray, actions: NDArray, episode_ids: NDArray, k: int, objects: tuple[str, ...],
                 gripper_index: int | None = None) -> None:
        self.database = EmbeddingDatabase(features, actions, episode_ids, gripper_index=gripper_index, index="exact")
        self.k, self.objects = k, objects

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, obs: dict[str, NDArray]) -> NDArray[np.float32]:
        return self.database.query(state_features(obs, self.objects)[None], self.k).actions[0]
