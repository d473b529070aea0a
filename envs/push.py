"""Pushing: a cube pushed across the table onto a green goal disk, seen by the wrist camera (videos: agentview).

robosuite has no push task; `VinnPush` is robosuite's Lift (same table and cube) plus a visual-only goal
disk (no collision). The cube starts on the robot's side, the goal 12-18 cm beyond it and up to 6 cm to
either side, both re-sampled every episode. Success is the goal state, not a pass through it: the cube at rest
on the goal disk for REST_STEPS consecutive control steps (see VinnPush._check_success); a cube pushed across
the disk at speed does not count.

Privileged keys: cube_pos, goal_pos (m).
"""

import numpy as np
from robosuite.environments.manipulation.lift import Lift
from robosuite.models.objects import CylinderObject
from robosuite.utils.observables import Observable, sensor
from robosuite.utils.placement_samplers import UniformRandomSampler
from vinn_policy.envs.robosuite_env import HeldFor, RobosuiteEnv, TaskSpec

GOAL_RADIUS = 0.03
"""m: the goal disk's radius; the cube's centre must lie within it (in xy)."""
ON_TABLE = 0.035
"""m: the cube's centre at most this far above the table top (resting, it is at its 2 cm half-size)."""
STILL_SPEED = 0.02
"""Linear speed (m/s) below which the cube counts as still: 1 mm per 20 Hz step. A pushed cube moves at
several cm per step; one the hand has let go of stops within a step or two (table friction)."""
REST_STEPS = 5
"""Consecutive control steps (0.25 s at 20 Hz) the cube must rest on the goal. A cube sliding across the
5 cm-wide disk is still moving when it leaves it, so it never builds up the count; 5 steps is short next to
an episode (~60 steps), so a cube brought to rest on the goal ends the episode promptly."""


class VinnPush(Lift):
    """Lift's table and cube with a goal disk; registered in robosuite under its class name."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault(
            "placement_initializer",
            UniformRandomSampler(
                name="CubeSampler",
                x_range=[-0.14, -0.08],
                y_range=[-0.08, 0.08],
                rotation=(-np.pi / 8, np.pi / 8),
                ensure_object_boundary_in_range=False,
                ensure_valid_placement=True,
                reference_pos=(0, 0, 0.8),
                z_offset=0.01,
            ),
        )
        self._at_rest = HeldFor(REST_STEPS)
        super().__init__(*args, **kwargs)

    def _load_model(self):
        super()._load_model()
        self.goal = CylinderObject(name="goal", size=[GOAL_RADIUS, 0.001], rgba=[0.1, 0.8, 0.1, 1], obj_type="visual", joints=None)
        self.model.merge_objects([self.goal])

    def _setup_references(self):
        super()._setup_references()
        self.goal_body_id = self.sim.model.body_name2id(self.goal.root_body)

    def _reset_internal(self):
        super()._reset_internal()
        self._at_rest.reset()
        cube = self.sim.data.get_joint_qpos(self.cube.joints[0])[:3]
        offset = [self.rng.uniform(0.12, 0.18), self.rng.uniform(-0.06, 0.06)]
        table_top = self.model.mujoco_arena.table_offset[2]
        self.sim.model.body_pos[self.goal_body_id] = [cube[0] + offset[0], cube[1] + offset[1], table_top + 0.001]
        self.sim.forward()

    def _setup_observables(self):
        observables = super()._setup_observables()

        @sensor(modality="object")
        def goal_pos(obs_cache):
            return np.array(self.sim.model.body_pos[self.goal_body_id])

        observables["goal_pos"] = Observable(name="goal_pos", sensor=goal_pos, sampling_rate=self.control_freq)
        return observables

    def at_rest_on_goal(self) -> bool:
        """Right now: cube centre within GOAL_RADIUS of the goal (xy), on the table, nearly still."""
        cube = self.sim.data.body_xpos[self.cube_body_id]
        goal = self.sim.model.body_pos[self.goal_body_id]
        speed = np.linalg.norm(self.sim.data.get_joint_qvel(self.cube.joints[0])[:3])  # free joint: world frame
        return bool(
            np.linalg.norm(cube[:2] - goal[:2]) < GOAL_RADIUS
            and cube[2] < self.model.mujoco_arena.table_offset[2] + ON_TABLE
            and speed < STILL_SPEED
        )

    def _check_success(self):
        """The cube has rested on the goal (see at_rest_on_goal) for REST_STEPS consecutive control steps."""
        return self._at_rest.update(float(self.sim.data.time), self.at_rest_on_goal)


class PushEnv(RobosuiteEnv):
    task = TaskSpec(
        robosuite_env="VinnPush",
        camera="robot0_eye_in_hand",  # cube and goal stay large and in view; agentview: VINN 24% vs 77% here
        render_camera="agentview",
        object_keys={"cube_pos": 3, "goal_pos": 3},
    )
