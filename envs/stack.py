"""Stacking: cube A (4 cm) picked and left resting on cube B (5 cm), seen by the wrist camera (videos: agentview).

`VinnStack` is robosuite's Stack with a success that means a stack. robosuite's own success passes at any
single step where A is 4 cm above the table, not grasped and touching B: A dropped beside B with its side
against B's counts, then lies on the table. Here success is A *resting on* B, held for STABLE_STEPS
consecutive control steps.

Privileged keys: cubeA_pos, cubeB_pos (m). Success: see VinnStack._check_success.
"""

import numpy as np
from robosuite.environments.manipulation.stack import Stack
from vinn_policy.envs.robosuite_env import HeldFor, RobosuiteEnv, TaskSpec

STACK_HEIGHT = 0.045
"""A's centre above B's when A rests on B: A's half-size (2 cm) plus B's (2.5 cm)."""
HEIGHT_TOLERANCE = 0.005
"""|height difference - STACK_HEIGHT| allowed (m): contact penetration is ~1 mm; A tilted on B's edge sits higher."""
CENTRE_TOLERANCE = 0.02
"""Horizontal offset of the centres allowed (m): A's centre is then over B's 5 cm top face, so A cannot tip off."""
STILL_SPEED = 0.02
"""Linear speed (m/s) below which a cube counts as still (1 mm per 20 Hz step)."""
STABLE_STEPS = 5
"""Consecutive control steps (0.25 s at 20 Hz) the stack must hold. A cube tipping off B's edge, sliding
across it or bouncing after a drop leaves the pose or exceeds STILL_SPEED within this time, and it is
short next to an expert episode (~70 steps) so a good stack ends the episode promptly."""


class VinnStack(Stack):
    """robosuite's Stack whose success is a stable stack; registered in robosuite under its class name."""

    def __init__(self, *args, **kwargs):
        self._stable = HeldFor(STABLE_STEPS)
        super().__init__(*args, **kwargs)

    def _reset_internal(self):
        super()._reset_internal()
        self._stable.reset()

    def stacked(self) -> bool:
        """A rests on B right now: centred, at stacking height, both nearly still, A not grasped."""
        a = self.sim.data.body_xpos[self.cubeA_body_id]
        b = self.sim.data.body_xpos[self.cubeB_body_id]
        speed_a = np.linalg.norm(self.sim.data.get_joint_qvel(self.cubeA.joints[0])[:3])  # free joint: world frame
        speed_b = np.linalg.norm(self.sim.data.get_joint_qvel(self.cubeB.joints[0])[:3])
        return bool(
            np.linalg.norm(a[:2] - b[:2]) < CENTRE_TOLERANCE
            and abs(a[2] - b[2] - STACK_HEIGHT) < HEIGHT_TOLERANCE
            and max(speed_a, speed_b) < STILL_SPEED
            and not self._check_grasp(gripper=self.robots[0].gripper, object_geoms=self.cubeA)
        )

    def _check_success(self):
        """A has rested on B (see stacked) for STABLE_STEPS consecutive control steps."""
        return self._stable.update(float(self.sim.data.time), self.stacked)

    def reward(self, action=None):
        """Sparse reward (reward_scale) on success; with reward_shaping, robosuite's staged rewards."""
        if self.reward_shaping:
            return super().reward(action)
        return float(self._check_success()) * (self.reward_scale if self.reward_scale is not None else 1.0)


class StackEnv(RobosuiteEnv):
    task = TaskSpec(
        robosuite_env="VinnStack",
        camera="robot0_eye_in_hand",  # in agentview the arm hides the cubes while grasping (VINN 0%)
        render_camera="agentview",
        object_keys={"cubeA_pos": 3, "cubeB_pos": 3},
    )
