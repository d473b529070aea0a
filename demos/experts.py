"""Scripted experts: privileged-state controllers with the same reset() / act(obs) surface as policies.

Each expert servoes the gripper to target points computed from object positions in the observation:
a = clip((target - eef) / 0.05, -1, 1), since a zero action does not hold position under contact. Object
positions are privileged simulator state, so experts need envs made with `privileged=True`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

STEP = 0.05  # metres per unit action (OSC_POSITION output limit)
OPEN, CLOSED = -1.0, 1.0


def servo(target: NDArray, eef: NDArray, grip: float, gain: float = 1.0) -> NDArray[np.float32]:
    """Delta action towards `target` (m), saturating at one step."""
    delta = np.clip(gain * (np.asarray(target) - eef) / STEP, -1.0, 1.0)
    return np.array([*delta, grip], dtype=np.float32)


class Expert:
    """Base: a phase machine over the observation dict."""

    task: str
    """The task's name in EXPERTS and TASKS."""
    keys: tuple[str, ...]
    """The privileged observation keys _act reads."""

    def __init__(self) -> None:
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        self.phase = 0
        self.t_phase = 0

    def next_phase(self) -> None:
        self.phase += 1
        self.t_phase = 0

    def act(self, obs: dict[str, NDArray]) -> NDArray[np.float32]:
        missing = [key for key in self.keys if key not in obs]
        if missing:  # a KeyError deep in _act would not say that the env was made for image policies
            raise ValueError(f"The {self.task} expert needs the privileged observation keys {missing}, which this "
                             f"observation lacks (it has {sorted(obs)}); make the env with privileged=True, "
                             f"e.g. make_env({self.task!r}, privileged=True).")
        action = self._act(obs)
        self.t_phase += 1
        return action

    def _act(self, obs: dict[str, NDArray]) -> NDArray[np.float32]:
        raise NotImplementedError


class DoorExpert(Expert):
    """Straddle the lever tip (gripper open, 2 cm towards the robot), press it down past the latch, pull +y."""

    task, keys = "door", ("handle_pos", "handle_qpos")
    OFFSET = np.array([0.0, 0.02, 0.0])  # centred on the lever the hand hits the door panel

    def _act(self, obs):
        eef, handle = obs["robot0_eef_pos"], obs["handle_pos"]
        grasp = handle + self.OFFSET
        if self.phase == 0:  # above the lever tip
            target = grasp + [0, 0, 0.06]
            if np.linalg.norm(target - eef) < 0.015 or self.t_phase > 40:
                self.next_phase()
        if self.phase == 1:  # down around the lever
            target = grasp + [0, 0, -0.01]
            if np.linalg.norm(target - eef) < 0.01 or self.t_phase > 25:
                self.next_phase()
        if self.phase == 2:  # press the lever tip down along its arc until the latch releases
            target = grasp + [0, 0, -0.05]
            if obs["handle_qpos"][0] > 1.35:
                self.next_phase()
        if self.phase == 3:  # pull the door open towards the robot, keeping the lever down
            target = grasp + [0, 0.08, -0.03]
        return servo(target, eef, OPEN)


class StackExpert(Expert):
    """Pick cube A, lift, carry it over cube B, lower until it rests on B, release."""

    task, keys = "stack", ("cubeA_pos", "cubeB_pos")

    def _act(self, obs):
        eef, a, b = obs["robot0_eef_pos"], obs["cubeA_pos"], obs["cubeB_pos"]
        if self.phase == 0:  # above A, open
            target, grip = a + [0, 0, 0.08], OPEN
            if np.linalg.norm(target - eef) < 0.015 or self.t_phase > 40:
                self.next_phase()
        if self.phase == 1:  # down to A
            target, grip = a + [0, 0, -0.005], OPEN
            if np.linalg.norm(target - eef) < 0.008 or self.t_phase > 25:
                self.next_phase()
        if self.phase == 2:  # close on A
            target, grip = a + [0, 0, -0.005], CLOSED
            if self.t_phase >= 8:
                self.next_phase()
        if self.phase == 3:  # lift
            target, grip = np.array([eef[0], eef[1], b[2] + 0.12]), CLOSED
            if eef[2] > b[2] + 0.10 or self.t_phase > 30:
                self.next_phase()
        if self.phase == 4:  # carry A over B (aim with A's position, not the hand's)
            target, grip = eef + (b + [0, 0, 0.10] - a), CLOSED
            if np.linalg.norm((a - b)[:2]) < 0.006 or self.t_phase > 40:
                self.next_phase()
        if self.phase == 5:  # lower A onto B
            target, grip = eef + (b + [0, 0, 0.043] - a), CLOSED
            if a[2] - b[2] < 0.048 or self.t_phase > 30:
                self.next_phase()
        if self.phase >= 6:  # release and back off upwards
            target, grip = np.array([eef[0], eef[1], b[2] + 0.12 if self.t_phase > 4 else eef[2]]), OPEN
        return servo(target, eef, grip)


class PushExpert(Expert):
    """Get behind the cube on the cube->goal line, fingertips just above the table, and push along it."""

    task, keys = "push", ("cube_pos", "goal_pos")
    BEHIND = 0.045  # gripper centre to cube centre while pushing (half cube + finger)

    def _act(self, obs):
        return self._push(obs, obs["goal_pos"])

    def _push(self, obs, goal):
        eef, cube = obs["robot0_eef_pos"], obs["cube_pos"]
        to_goal = (goal - cube)[:2]
        d = to_goal / max(np.linalg.norm(to_goal), 1e-6)
        behind = cube[:2] - d * (self.BEHIND + 0.02)
        push_z = cube[2] + 0.005  # lower and the fingertips drag on the table
        if self.phase == 0:  # above the pre-push point
            target = np.array([*behind, cube[2] + 0.08])
            if np.linalg.norm(target - eef) < 0.015 or self.t_phase > 40:
                self.next_phase()
        if self.phase == 1:  # descend behind the cube
            target = np.array([*behind, push_z])
            if np.linalg.norm(target - eef) < 0.01 or self.t_phase > 25:
                self.next_phase()
        if self.phase == 2:  # push: stay on the line behind the cube, aim a little past its centre
            lateral = np.cross(np.append(d, 0), np.append(eef[:2] - cube[:2], 0))[2]
            if abs(lateral) > 0.025:  # slipped off the line: lift and approach again
                self.phase, self.t_phase = 0, 0
                return self._push(obs, goal)
            ahead = min(np.linalg.norm(to_goal), 0.04)
            target = np.array([*(cube[:2] - d * (self.BEHIND - ahead)), push_z])
        return servo(target, eef, CLOSED)


class PushAroundExpert(PushExpert):
    """Push the cube sideways into a lane beside the block, along it past the block, then in onto the goal.

    The lane is on the robot's left (+y) in even-seeded episodes and on its right in odd ones: two strategies.
    """

    task, keys = "push_around", ("cube_pos", "goal_pos", "obstacle_pos")
    LANE = 0.08  # m from the block's centre line

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        self.side = 1.0 if (seed or 0) % 2 == 0 else -1.0
        self.waypoints: list[NDArray] | None = None

    def _act(self, obs):
        cube, goal = obs["cube_pos"], obs["goal_pos"]
        if self.waypoints is None:
            lane = obs["obstacle_pos"][1] + self.side * self.LANE
            self.waypoints = [np.array([cube[0], lane]), np.array([goal[0], lane])]
        if len(self.waypoints) == 2 and abs(cube[1] - self.waypoints[0][1]) < 0.02:  # in the lane
            self.waypoints.pop(0)
        if len(self.waypoints) == 1 and cube[0] > self.waypoints[0][0] - 0.02:  # past the block
            self.waypoints.pop(0)
        target = self.waypoints[0] if self.waypoints else goal[:2]
        return self._push(obs, np.array([*target, goal[2]]))


EXPERTS = {"door": DoorExpert, "push": PushExpert, "stack": StackExpert, "push_around": PushAroundExpert}


def make_expert(task: str) -> Expert:
    """The scripted expert of a task (its env must be made with privileged=True)."""
    if task not in EXPERTS:
        raise ValueError(f"Unknown task {task!r}; available experts: {sorted(EXPERTS)}")
    return EXPERTS[task]()
