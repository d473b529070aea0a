"""Door opening: robosuite's Door with the latch on, seen from the side, placed widely enough to need vision.

`VinnDoor` is robosuite's Door with a wider door placement and a noisier arm start than robosuite's defaults
(x in [0.07, 0.09], y in +-0.01 m, 0.02 rad of joint noise), with which one demonstration's actions replayed
blind open the door on most new seeds: v1 moves the door over 16 x 16 cm and turns it over 0.4 rad, starts
the arm with 0.15 rad of Gaussian noise per joint and then drives the hand to a uniform point of a
30 x 40 x 20 cm box (more joint noise instead left the arm stuck at its limits: expert 83-88%), so the
handle and the hand are wherever the camera says they are. The door stays inside the sideview camera and
the arm's reach (benchmarks/door_vision.py measures all of this).

Privileged keys: handle_pos (lever tip, m), door_pos (m), hinge_qpos (door angle, rad; success > 0.3),
handle_qpos (lever angle, rad; the latch releases past ~1.3).
"""

import numpy as np
from robosuite.environments.manipulation.door import Door
from robosuite.utils.placement_samplers import UniformRandomSampler
from vinn_policy.envs.robosuite_env import RobosuiteEnv, TaskSpec

X_RANGE = (0.0, 0.16)
"""Door placement along the table (m, from the table's reference point); robosuite's own: (0.07, 0.09)."""
Y_RANGE = (-0.08, 0.08)
"""Door placement across the table (m); robosuite's own: +-0.01."""
YAW_RANGE = (-np.pi / 2 - 0.4, -np.pi / 2)
"""Door yaw (rad); robosuite's own: (-pi/2 - 0.25, -pi/2)."""
JOINT_NOISE = 0.15
"""Std of the Gaussian noise on the arm's initial joint angles (rad); robosuite's own: 0.02."""
HAND_START = (0.15, 0.20, 0.10)
"""Half-widths (m) of the box the hand starts in, around robosuite's start: reset drives it there (TaskSpec.hand_start)."""


class VinnDoor(Door):
    """robosuite's Door, placed widely and with a noisy arm start; registered in robosuite under its class name."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("initialization_noise", {"magnitude": JOINT_NOISE, "type": "gaussian"})
        kwargs.setdefault(
            "placement_initializer",
            UniformRandomSampler(  # Door._load_model adds the door to it
                name="DoorSampler",
                x_range=list(X_RANGE),
                y_range=list(Y_RANGE),
                rotation=YAW_RANGE,
                rotation_axis="z",
                ensure_object_boundary_in_range=False,
                ensure_valid_placement=True,
                reference_pos=(-0.2, -0.35, 0.8),  # Door's table_offset, which it sets only inside __init__
            ),
        )
        super().__init__(*args, **kwargs)


class DoorEnv(RobosuiteEnv):
    task = TaskSpec(
        robosuite_env="VinnDoor",
        camera="sideview",  # agentview barely shows the door
        render_camera="sideview",
        object_keys={"handle_pos": 3, "door_pos": 3, "hinge_qpos": 1, "handle_qpos": 1},
        robosuite_kwargs={"use_latch": True},
        hand_start=HAND_START,
        variation={"x_range": X_RANGE, "y_range": Y_RANGE, "yaw_range": YAW_RANGE,
                   "joint_noise": JOINT_NOISE, "hand_start": HAND_START},
    )
