"""Push-v1: success is the cube at rest on the goal, and the push expert is memoryless."""

import numpy as np
import pytest
from vinn_policy.demos.experts import make_expert
from vinn_policy.envs import make_env
from vinn_policy.envs.push import REST_STEPS

pytestmark = pytest.mark.sim


@pytest.fixture
def push_env():
    env = make_env("push", image_size=32, privileged=True, terminate_on_success=False)
    env.unwrapped.set_camera_obs(False)  # physics only
    yield env
    env.close()


def place_cube(env, xy, velocity=(0.0, 0.0)):
    """Put the cube square on the table at `xy` with a horizontal velocity (m/s)."""
    rs = env.unwrapped._rs
    joint = rs.cube.joints[0]
    table_top = rs.model.mujoco_arena.table_offset[2]
    rs.sim.data.set_joint_qpos(joint, np.array([*xy, table_top + rs.cube.size[2], 1.0, 0.0, 0.0, 0.0]))
    rs.sim.data.set_joint_qvel(joint, np.array([*velocity, 0.0, 0.0, 0.0, 0.0]))
    rs.sim.forward()


def test_a_cube_sliding_across_the_goal_is_not_a_success(push_env):
    obs, _ = push_env.reset(seed=0)
    goal = obs["goal_pos"][:2]
    place_cube(push_env, goal - [0.06, 0.0], velocity=(1.6, 0.0))  # slides over the disk and off its far side
    crossed, successes = False, []
    for _ in range(20):
        obs, _, _, _, info = push_env.step(np.zeros(4, np.float32))
        crossed |= bool(np.linalg.norm(obs["cube_pos"][:2] - goal) < 0.03)  # v0's success at that step
        successes.append(info["is_success"])
    assert crossed, "the near miss must actually pass over the goal"
    assert np.linalg.norm(obs["cube_pos"][:2] - goal) > 0.03
    assert not any(successes)


def test_a_cube_at_rest_on_the_goal_succeeds_after_the_rest_steps(push_env):
    obs, _ = push_env.reset(seed=0)
    place_cube(push_env, obs["goal_pos"][:2])
    rs = push_env.unwrapped._rs
    for step in range(1, REST_STEPS + 2):
        _, _, _, _, info = push_env.step(np.zeros(4, np.float32))
        for _ in range(3):  # asking again within one step does not advance the count
            rs._check_success()
        assert info["is_success"] == (step >= REST_STEPS), step


def test_the_rest_count_restarts_on_reset(push_env):
    obs, _ = push_env.reset(seed=0)
    place_cube(push_env, obs["goal_pos"][:2])
    for _ in range(REST_STEPS):
        _, _, _, _, info = push_env.step(np.zeros(4, np.float32))
    assert info["is_success"]
    _, info = push_env.reset(seed=0)
    assert not info["is_success"]


def test_push_expert_action_depends_only_on_the_observation(push_env):
    expert = make_expert("push")
    obs, _ = push_env.reset(seed=3)
    expert.reset(seed=3)
    observations, actions = [], []
    rng = np.random.default_rng(0)
    for _ in range(80):
        action = expert.act(obs)
        observations.append(obs)
        actions.append(action)
        noisy = action.copy()
        noisy[:3] += 0.1 * rng.standard_normal(3)  # visit off-line states too
        obs, _, terminated, truncated, _ = push_env.step(noisy)
        if terminated or truncated:
            break
    fresh = make_expert("push")
    fresh.reset(seed=123)
    order = rng.permutation(len(observations))
    for i in order:
        np.testing.assert_array_equal(fresh.act(observations[i]), actions[i])
