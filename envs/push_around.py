"""Pushing around an obstacle: the two-strategy task that breaks VINN's unimodality assumption on purpose.

`VinnPushAround` is `VinnPush` with a fixed blue block halfway between the cube and the goal, which lies straight
ahead of the cube. The cube always starts at the same pose and the goal varies by only +-2 cm sideways: with
little else to tell episodes apart, one strategy alone is easy for VINN, so what breaks with two is the averaging. The cube must be pushed around the block, through a lane on its left or on its right; both succeed. The
scripted expert takes the left in even-seeded episodes and the right in odd ones, so at the start the
demonstrations disagree while looking alike, and their average pushes the cube straight into the block.

Privileged keys: cube_pos, goal_pos, obstacle_pos (m). Success as in push.
"""

import numpy as np
from robosuite.models.objects import BoxObject
from robosuite.utils.observables import Observable, sensor
from robosuite.utils.placement_samplers import UniformRandomSampler
from vinn_policy.envs.push import VinnPush
from vinn_policy.envs.robosuite_env import RobosuiteEnv, TaskSpec

OBSTACLE_HALF = 0.02  # m: a 4 cm block, 3 cm tall (lower than the 4 cm cube, so the hand passes over it)
GOAL_AHEAD = 0.16  # m beyond the cube (+x); the block sits halfway


class VinnPushAround(VinnPush):
    """Push's table, cube and goal disk plus a fixed block between cube and goal."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault(
            "placement_initializer",
            UniformRandomSampler(
                name="CubeSampler", x_range=[-0.12, -0.12], y_range=[0.0, 0.0], rotation=0.0,
                ensure_object_boundary_in_range=False, ensure_valid_placement=True, reference_pos=(0, 0, 0.8), z_offset=0.01,
            ),
        )
        super().__init__(*args, **kwargs)

    def _load_model(self):
        super()._load_model()
        self.obstacle = BoxObject(name="obstacle", size=[OBSTACLE_HALF, OBSTACLE_HALF, 0.015], rgba=[0.15, 0.25, 0.8, 1],
                                  obj_type="all", joints=None)
        self.model.merge_objects([self.obstacle])

    def _setup_references(self):
        super()._setup_references()
        self.obstacle_body_id = self.sim.model.body_name2id(self.obstacle.root_body)

    def _reset_internal(self):
        super()._reset_internal()
        cube = self.sim.data.get_joint_qpos(self.cube.joints[0])[:3]
        table_top = self.model.mujoco_arena.table_offset[2]
        goal = [cube[0] + GOAL_AHEAD, cube[1] + self.rng.uniform(-0.02, 0.02), table_top + 0.001]
        self.sim.model.body_pos[self.goal_body_id] = goal
        self.sim.model.body_pos[self.obstacle_body_id] = [(cube[0] + goal[0]) / 2, (cube[1] + goal[1]) / 2, table_top + 0.015]
        self.sim.forward()

    def _setup_observables(self):
        observables = super()._setup_observables()

        @sensor(modality="object")
        def obstacle_pos(obs_cache):
            return np.array(self.sim.model.body_pos[self.obstacle_body_id])

        observables["obstacle_pos"] = Observable(name="obstacle_pos", sensor=obstacle_pos, sampling_rate=self.control_freq)
        return observables


class PushAroundEnv(RobosuiteEnv):
    task = TaskSpec(
        robosuite_env="VinnPushAround",
        camera="agentview",
        render_camera="agentview",
        object_keys={"cube_pos": 3, "goal_pos": 3, "obstacle_pos": 3},
    )
