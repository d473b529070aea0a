"""The action layout, defined once for the database, BC, offline metrics, diagnostics and the benchmark.

Actions are end-effector deltas with the gripper last: [dx, dy, dz, grip] in this project's envs,
[dx, dy, dz, rx, ry, rz, grip] in robomimic's files. So the gripper is the LAST dimension (never a fixed
index: dimension 3 of a robomimic action is a rotation) and the translation is the first three.
"""

from __future__ import annotations

import numbers

TRANSLATION_DIMS = (0, 1, 2)
"""The dimensions of the paper's offline metric (translation MSE)."""
GRIPPER_INDEX = -1
"""The gripper command: the last action dimension, resolved against the action size by `resolve_gripper_index`."""


def resolve_gripper_index(gripper_index: int | None, action_dim: int) -> int | None:
    """`gripper_index` as a non-negative dimension of an `action_dim`-d action (-1: the last), or None.

    Raises:
        ValueError: not an integer, or outside the action's dimensions.
    """
    if gripper_index is None:
        return None
    if not isinstance(gripper_index, numbers.Integral) or isinstance(gripper_index, bool):
        raise ValueError(f"gripper_index must be an integer dimension of the action or None; got {gripper_index!r}.")
    if not -action_dim <= gripper_index < action_dim:
        raise ValueError(f"gripper_index {gripper_index} is outside the action's {action_dim} dimensions "
                         f"(expected -{action_dim} .. {action_dim - 1}; -1 is the last).")
    return int(gripper_index) % action_dim
