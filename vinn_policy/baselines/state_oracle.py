"""The state oracle: VINN's locally weighted regression over privileged simulator state instead of images.

Not a baseline in the benchmark table: its success is what a perfect encoder would allow with the same
demonstrations, so any gap between it and VINN is the representation's.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from vinn_policy.database import EmbeddingDatabase

JOINT_SCALE = 0.1
"""Radians are compared with centimetres at 0.1 rad per cm: a door lever's 1.4 rad of travel spans 14 units,
like the hand's approach to it."""


def state_features(obs: dict[str, NDArray], objects: tuple[str, ...], joints: tuple[str, ...] = ()) -> NDArray[np.float32]:
    """(..., 3 * len(objects) + 2 + len(joints)) the state oracle's embedding, in cm: each object position relative
    to the gripper (robot0_eef_pos), the finger joints (robot0_gripper_qpos), then the objects' own joint angles
    (e.g. a door's lever and hinge, one value each) at JOINT_SCALE rad per unit."""
    missing = [key for key in ("robot0_eef_pos", *objects, "robot0_gripper_qpos", *joints) if key not in obs]
    if missing:
        raise ValueError(f"The state oracle needs the privileged observation keys {missing}; got {sorted(obs)}.")
    eef = np.asarray(obs["robot0_eef_pos"])
    parts = [100 * (np.asarray(obs[key]) - eef) for key in objects] + [100 * np.asarray(obs["robot0_gripper_qpos"])]
    parts += [np.asarray(obs[key]) / JOINT_SCALE for key in joints]
    return np.concatenate(parts, -1).astype(np.float32)


class StateKNNPolicy:
    """An oracle, not a baseline: VINN's locally weighted regression (k nearest by L2, softmin weights, gripper
    vote) over state_features instead of image embeddings. Its success is what a perfect encoder would allow
    with the same demonstrations. Needs the simulator's privileged keys in every observation."""

    uses_images = False

    def __init__(self, features: NDArray, actions: NDArray, episode_ids: NDArray, k: int, objects: tuple[str, ...],
                 gripper_index: int | None = None, joints: tuple[str, ...] = ()) -> None:
        self.database = EmbeddingDatabase(features, actions, episode_ids, gripper_index=gripper_index, index="exact")
        self.k, self.objects, self.joints = k, objects, joints

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, obs: dict[str, NDArray]) -> NDArray[np.float32]:
        self.last_state = state_features(obs, self.objects, self.joints)  # what the last action was looked up by
        return self.database.query(self.last_state[None], self.k).actions[0]


def last_joint_angles(policy: StateKNNPolicy) -> dict[str, float]:
    """The object joint angles (rad) behind the oracle's last action, for rollouts' trace= (how far an episode got)."""
    angles = policy.last_state[policy.last_state.shape[-1] - len(policy.joints):]  # the state ends with them
    return {j: float(v * JOINT_SCALE) for j, v in zip(policy.joints, angles, strict=True)}
