"""Stack-v1: success is a stable stack (near misses do not count) and the expert is memoryless."""

import inspect

import numpy as np
import pytest
from robosuite.environments.manipulation.stack import Stack
from vinn_policy.demos.experts import CLOSED, OPEN, StackExpert, servo
from vinn_policy.envs import make_env
from vinn_policy.envs.stack import STABLE_STEPS, STACK_HEIGHT

from vinn_policy.harness.rollout import run_episode

pytestmark = pytest.mark.sim

UPRIGHT = [1.0, 0.0, 0.0, 0.0]  # MuJoCo quaternion (w, x, y, z)


@pytest.fixture(scope="module")
def env():
    env = make_env("stack", image_size=32, privileged=True, terminate_on_success=False)
    env.unwrapped.set_camera_obs(False)  # the physics never looks
    yield env
    env.close()


def place(rs, a_offset: np.ndarray) -> np.ndarray:
    """Square both cubes to the world and put A at B's centre + a_offset, at rest; returns B's centre."""
    b = np.array(rs.sim.data.body_xpos[rs.cubeB_body_id])
    rs.sim.data.set_joint_qpos(rs.cubeB.joints[0], np.concatenate([b, UPRIGHT]))
    rs.sim.data.set_joint_qpos(rs.cubeA.joints[0], np.concatenate([b + a_offset, UPRIGHT]))
    for cube in (rs.cubeA, rs.cubeB):
        rs.sim.data.set_joint_qvel(cube.joints[0], np.zeros(6))
    rs.sim.forward()
    return b


def hold_still(env, steps: int) -> list[bool]:
    """Step with the hand kept where it is (open, far above the cubes); success of each step."""
    hand = env.unwrapped._rs.sim.data.site_xpos[env.unwrapped._rs.robots[0].eef_site_id["right"]].copy()
    successes = []
    for _ in range(steps):
        obs, _, _, _, info = env.step(servo(hand, obs_eef(env), OPEN))
        successes.append(info["is_success"])
    return successes


def obs_eef(env) -> np.ndarray:
    rs = env.unwrapped._rs
    return np.array(rs.sim.data.site_xpos[rs.robots[0].eef_site_id["right"]])


def test_a_dropped_against_bs_side_is_not_a_stack(env):
    env.reset(seed=0)
    rs = env.unwrapped._rs
    place(rs, np.array([0.045, 0.0, 0.045]))  # A's side flush with B's, A's bottom 7 cm above the table
    robosuite_success, ours = [], []
    for _ in range(25):
        ours += hold_still(env, 1)
        robosuite_success.append(Stack._check_success(rs))
    assert any(robosuite_success), "the near miss should fool robosuite's own check (else this tests nothing)"
    assert not any(ours)
    a = rs.sim.data.body_xpos[rs.cubeA_body_id]
    assert a[2] < rs.table_offset[2] + 0.03  # A ended on the table


def test_a_resting_on_b_succeeds_after_the_stable_steps_however_often_success_is_asked(env):
    env.reset(seed=1)
    rs = env.unwrapped._rs
    place(rs, np.array([0.003, -0.004, STACK_HEIGHT + 0.001]))
    successes = []
    for _ in range(STABLE_STEPS + 5):
        successes += hold_still(env, 1)
        extra = [rs._check_success() for _ in range(3)]  # extra calls within one step must not advance the count
        assert extra == [successes[-1]] * 3
    first = successes.index(True)
    assert STABLE_STEPS - 1 <= first <= STABLE_STEPS + 2  # counted from the first settled step
    assert all(successes[first:])
    assert env.reset(seed=1)[1]["is_success"] is False  # the count restarts with the episode


def test_a_held_in_the_gripper_on_b_does_not_count():
    env = make_env("stack", image_size=32, privileged=True, terminate_on_success=False)
    env.unwrapped.set_camera_obs(False)
    rs = env.unwrapped._rs
    expert = StackExpert()
    obs, _ = env.reset(seed=2)
    for _ in range(120):  # the expert until it carries A low over B
        a, b = obs["cubeA_pos"], obs["cubeB_pos"]
        if rs._check_grasp(rs.robots[0].gripper, rs.cubeA) and np.linalg.norm((a - b)[:2]) < 0.006 and a[2] - b[2] < 0.06:
            break
        obs, *_ = env.step(expert.act(obs))
    else:
        pytest.fail("the expert never carried A over B")
    for _ in range(STABLE_STEPS + 10):  # set A down on B but keep hold of it
        a, b, eef = obs["cubeA_pos"], obs["cubeB_pos"], obs["robot0_eef_pos"]
        obs, _, _, _, info = env.step(servo(eef + (b + [0, 0, STACK_HEIGHT] - a), eef, CLOSED))
        assert not info["is_success"]
    a, b = obs["cubeA_pos"], obs["cubeB_pos"]
    assert rs._check_grasp(rs.robots[0].gripper, rs.cubeA)
    assert np.linalg.norm((a - b)[:2]) < 0.01 and abs(a[2] - b[2] - STACK_HEIGHT) < 0.005  # otherwise a stack
    env.close()


def test_the_stack_expert_has_no_memory(env):
    """Its action is a function of the observation: an episode's observations fed to a fresh expert in shuffled
    order give the same actions, and the class keeps no phase, timer or waypoint state."""
    episode = run_episode(env, StackExpert(), seed=3, action_noise=0.1, record=True)
    assert episode.success
    observations = [{key: values[t] for key, values in episode.obs.items()} for t in range(episode.steps)]
    fresh = StackExpert()
    for t in np.random.default_rng(0).permutation(episode.steps):
        np.testing.assert_array_equal(fresh.act(observations[t]), episode.actions[t])
    source = inspect.getsource(StackExpert)
    for stateful in ("self.phase", "self.t_phase", "next_phase(", "self.waypoint"):
        assert stateful not in source


def test_the_stack_expert_goes_back_for_a_dropped_cube(env):
    expert = StackExpert()
    obs, _ = env.reset(seed=4)
    dropped = False
    for _ in range(200):
        action = expert.act(obs)
        a = obs["cubeA_pos"]
        lifted = a[2] > env.unwrapped._rs.table_offset[2] + 0.05
        if lifted and not dropped:  # force the hand open mid-carry: A falls
            for _ in range(6):
                obs, *_ = env.step(np.array([0, 0, 0, OPEN], np.float32))
            dropped = True
            continue
        obs, _, _, _, info = env.step(action)
        if info["is_success"]:
            break
    assert dropped and info["is_success"]
