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
    """Base: an expert whose action is a function of the current observation (memoryless), so that a kNN imitator
    over the same state can follow it. Subclasses implement `_act`; `version` is recorded in demonstration files,
    so that demos made by an older expert are not reused (harness.pipeline.ensure_demos)."""

    task: str
    """The task's name in EXPERTS and TASKS."""
    keys: tuple[str, ...]
    """The privileged observation keys _act reads."""
    version: int = 2
    """2: memoryless (v1 tasks); 1 was a phase machine with timers."""

    def __init__(self) -> None:
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """Nothing to forget: the experts keep no state between steps (PushAround's strategy is per episode)."""

    def act(self, obs: dict[str, NDArray]) -> NDArray[np.float32]:
        missing = [key for key in self.keys if key not in obs]
        if missing:  # a KeyError deep in _act would not say that the env was made for image policies
            raise ValueError(f"The {self.task} expert needs the privileged observation keys {missing}, which this "
                             f"observation lacks (it has {sorted(obs)}); make the env with privileged=True, "
                             f"e.g. make_env({self.task!r}, privileged=True).")
        return self._act(obs)

    @classmethod
    def name(cls) -> str:
        """How demonstration files record the expert that made them, e.g. 'StackExpert-v2'."""
        return f"{cls.__name__}-v{cls.version}"

    def _act(self, obs: dict[str, NDArray]) -> NDArray[np.float32]:
        raise NotImplementedError


class DoorExpert(Expert):
    """Memoryless: where to servo is read off the state each step, so a state-kNN imitator can follow it.

    Gripper open throughout, the hand 2 cm out from the lever tip (centred on it the hand hits the panel).
    Latch released (lever past 1.35 rad) or door opening, hand at the lever: pull the door along its swing,
    still pushing the lever round. Lever turned, hand at it: drag the tip round its arc. Otherwise a funnel:
    the target sits the higher above the tip the further off in xy the hand is, so it descends as it lines up,
    and if the lever slips it rises and lines up again; below the funnel it rises before closing in, or the
    fingers would catch the lever from underneath. Directions follow the door's yaw, read off the lever tip's
    offset from the panel (door_pos) and the lever angle through the door model's geometry.
    """

    task, keys = "door", ("handle_pos", "door_pos", "handle_qpos", "hinge_qpos")
    HOVER = 0.06  # funnel's top: height above the grasp point when far off in xy (m)
    FUNNEL = 4.0  # metres of height per metre of xy error
    RELEASED, OPENING = 1.35, 0.08  # lever angle past the latch; hinge angle past the latch's play (rad)
    LEVER, TIP, HINGE = (-0.175, 0.0), (0.125, -0.10), 0.255  # door model (door_lock.xml), panel frame (m)

    def door_directions(self, obs) -> tuple[NDArray, NDArray, NDArray]:
        """World unit vectors (3,): the tip's swing as the door opens, the panel's normal out towards the lever,
        and the tip's motion as the lever turns down (tangent of its arc)."""
        lever = float(obs["handle_qpos"][0])
        local = np.array([self.LEVER[0] + self.TIP[0] * np.cos(lever), self.TIP[1]])  # tip from panel centre (xy)
        d = (obs["handle_pos"] - obs["door_pos"])[:2]
        yaw = np.arctan2(d[1], d[0]) - np.arctan2(local[1], local[0])  # the panel's heading, hinge included
        c, s = np.cos(yaw), np.sin(yaw)
        radius = local - [self.HINGE, 0.0]
        swing = np.array([-radius[1] * c - radius[0] * s, -radius[1] * s + radius[0] * c, 0.0])  # z x radius, rotated
        out = np.array([s, -c, 0.0])  # panel frame -y
        arc = np.array([-np.sin(lever) * c, -np.sin(lever) * s, -np.cos(lever)])
        return swing / np.linalg.norm(swing), out, arc

    def _act(self, obs):
        eef, tip = obs["robot0_eef_pos"], obs["handle_pos"]
        lever, hinge = float(obs["handle_qpos"][0]), float(obs["hinge_qpos"][0])
        swing, out, arc = self.door_directions(obs)
        grasp = tip + 0.02 * out
        err = grasp - eef
        xy = float(np.linalg.norm(err[:2]))
        at_lever = xy < 0.05 and eef[2] < tip[2] + 0.02
        if (lever > self.RELEASED or hinge > self.OPENING) and at_lever:  # pull open, keep the latch clear
            target = grasp + 0.08 * swing + 0.03 * arc
        elif lever > 0.15 and xy < 0.05:  # on the lever: drag the tip round its arc
            target = grasp + 0.05 * arc
        else:  # funnel: aligned in xy -> press depth; 2.75 cm off or more -> hover height
            height = float(np.clip(self.FUNNEL * (xy - 0.01) - 0.05, -0.05, self.HOVER))
            target = grasp + [0, 0, height]
            below = target[2] - eef[2]
            if below > 0.02:  # under the funnel: close in only as the hand comes up to it
                target[:2] = eef[:2] + float(np.clip(1.0 - (below - 0.02) / 0.04, 0.0, 1.0)) * err[:2]
        return servo(target, eef, OPEN)


class StackExpert(Expert):
    """Pick cube A and leave it resting on cube B: a function of the current observation only.

    No phases, timers or hover points. Each step reads three facts off the state and acts on them:
    A rests on B (open, then rise), A is between the fingers (close; once the fingers have closed on it,
    carry it down a funnel onto B), or neither (open, come down a funnel onto A). A slip or a bad drop is
    just another state, so the expert goes back for A by itself. Both funnels lower the target as the
    horizontal error shrinks, so the hand descends while it lines up instead of stopping above a waypoint.
    """

    task, keys = "stack", ("cubeA_pos", "cubeB_pos")
    GRASP = np.array([0.0, 0.0, -0.004])  # hand (grip site) relative to A's centre when holding it
    STACK = 0.045  # A's centre above B's when resting on it (half-sizes 2 + 2.5 cm)
    HOLDING_WIDTH = 0.062  # finger opening (m) below which fingers with A between them are closing on it: 0.040
    # (fingers square to A) to 0.057 (across its diagonal) when they hold it, ~0.079 when open
    OPEN_WIDTH = 0.07  # finger opening above which the hand is open (fully open ~0.079)

    def _act(self, obs):
        eef, a, b = obs["robot0_eef_pos"], obs["cubeA_pos"], obs["cubeB_pos"]
        width = float(obs["robot0_gripper_qpos"][0] - obs["robot0_gripper_qpos"][1])
        to_a = a - eef
        # A between the fingers (they close along y, so A may sit off-centre that way)
        between = abs(to_a[0]) < 0.016 and abs(to_a[1]) < 0.018 and -0.008 < to_a[2] < 0.012
        a_over_b = np.linalg.norm((a - b)[:2])
        on_b = a_over_b < 0.018 and -0.007 < a[2] - b[2] - self.STACK < 0.004  # pressed onto B: up to ~3 mm low
        if on_b:  # let go, keeping A centred on B while the fingers open; then rise
            if between and width < self.OPEN_WIDTH:
                return servo(np.array([*(eef + b - a)[:2], a[2] + self.GRASP[2]]), eef, OPEN)
            return servo(np.array([eef[0], eef[1], a[2] + 0.10]), eef, OPEN)
        if between:
            if width > self.HOLDING_WIDTH:  # still closing on A: stay put along y (the fingers centre A)
                return servo(np.array([a[0], eef[1], a[2] + self.GRASP[2]]), eef, CLOSED)
            # Carry A down a funnel onto B: A's height above B falls as it lines up, keeping A's bottom above
            # B's top until it is over B; aim 5 mm low so A is set down, not hovered.
            height = self.STACK - 0.005 + np.clip(1.5 * (a_over_b - 0.004), 0.0, 0.06)
            lateral = (b - a)[:2]
            if a_over_b > 0.015:  # not over B yet: move sideways only as fast as A clears B's top
                lateral = lateral * np.clip((a[2] - b[2] - self.STACK) / 0.02, 0.0, 1.0)
            lift = b[2] + height - a[2]
            if width > 0.047 and a[2] - b[2] < 0.01:  # square to A the fingers would still be closing: ease A
                lift = min(lift, 0.004)  # off the table; a grip across A's diagonal holds and then lifts at speed
            return servo(eef + np.array([*lateral, lift]), eef, CLOSED)
        # Go for A, fingers open: descend as the hand lines up over A (fingertips clear A's top while off
        # to the side), and stay above A until the fingers are open. The fingers close along y; with B close
        # beside A along y, a fully open finger would land on B, so aim the hand up to 13 mm away from B:
        # the near finger then touches A first and pushes it away from B as they close.
        dx, dy = np.abs((b - a)[:2])
        crowded = np.clip((0.09 - dy) / 0.02, 0.0, 1.0) * np.clip((0.06 - dx) / 0.015, 0.0, 1.0)
        grasp = a + self.GRASP - [0.0, np.sign(b[1] - a[1]) * 0.013 * crowded, 0.0]
        off = np.linalg.norm((grasp - eef)[:2])
        z = grasp[2] + np.clip(3.0 * (off - 0.003), 0.0, 0.10)
        if width < self.OPEN_WIDTH:
            if np.linalg.norm(to_a[:2]) < 0.04 and to_a[2] > -0.05:  # right by A: open in place, not dragging it
                return servo(eef, eef, OPEN)
            z = max(z, a[2] + 0.045)
        return servo(np.array([grasp[0], grasp[1], z]), eef, OPEN)


class PushExpert(Expert):
    """Line up behind the cube on the cube->goal line, push along it, stop with the cube on the goal.

    Memoryless: the action is a function of the current observation alone (no phases, timers or latched
    flags), so a policy that only sees the current state, e.g. kNN over it, can imitate it. Where the hand is
    decides what it does:

    - cube on the goal (within STOP): back away from the cube, so it comes to rest there;
    - lined up (behind the cube, within LINE of the line, hand low): push along the line, slowing as the
      cube nears the goal;
    - otherwise: servo to the pre-push point behind the cube along a funnel, high while the hand is off the
      line or not behind the cube (so it passes over the cube) and descending as that error shrinks. A hand
      that slips off the line while pushing is thereby lifted and brought round again.

    The gripper stays closed: the fingers together are the pusher.
    """

    task, keys = "push", ("cube_pos", "goal_pos")
    CONTACT = 0.035  # m, gripper centre to cube centre when the closed fingers touch its back face (cube square on)
    PRE = 0.025  # m, the pre-push point this far behind the contact point
    LINE = 0.02  # m, lateral error tolerated while pushing: a cube a little off the line is still pushed, and steered back
    LOW = 0.015  # m, hand at most this far above the push height to push (higher, it may be on the cube's edge)
    FUNNEL = 1.5  # m of height per m of line error while approaching
    CLEAR = 0.07  # m, highest approach above the push height (the cube's top is ~1.5 cm above it)
    STOP = 0.01  # m, cube centre to goal centre where pushing stops
    OVERSHOOT = 0.01  # m, the push aims the cube this far past the goal, so it reaches STOP instead of stalling
    ADVANCE = 0.04  # m, furthest the push target lies ahead of the hand (limits the speed at impact)

    def _act(self, obs):
        return self._push(obs, obs["goal_pos"])

    def _push(self, obs, goal):
        eef, cube = obs["robot0_eef_pos"], obs["cube_pos"]
        push_z = cube[2] + 0.005  # lower and the fingertips drag on the table
        to_goal = (goal - cube)[:2]
        dist = np.linalg.norm(to_goal)
        rel = eef[:2] - cube[:2]
        if dist < self.STOP:  # at the goal: back away from the cube and up a little, leaving it at rest
            away = rel / max(np.linalg.norm(rel), 1e-6)
            return servo(np.array([*(cube[:2] + away * (self.CONTACT + 0.03)), push_z + 0.02]), eef, CLOSED)
        d = to_goal / dist
        along = rel @ d  # < 0: behind the cube
        lateral = d[0] * rel[1] - d[1] * rel[0]
        if abs(lateral) < self.LINE and along < -0.02 and eef[2] - push_z < self.LOW:
            # push along the line, aiming the cube a little past the goal (slowing as it nears it). The closed
            # fingers are a flat pusher the cube sticks to: it goes where the hand goes, so the hand moves along
            # the line, only gently correcting its lateral error (a sideways shove drags the cube along).
            advance = min(-self.CONTACT + min(dist, 0.03) + self.OVERSHOOT - along, self.ADVANCE)
            side = np.array([-d[1], d[0]])  # the direction in which lateral is measured
            return servo(np.array([*(eef[:2] + d * advance - side * lateral / 2), push_z]), eef, CLOSED)
        # approach the pre-push point; the height falls as the hand gets onto the line behind the cube
        error = np.hypot(lateral, max(0.0, along + self.CONTACT + self.PRE))
        height = min(self.CLEAR, self.FUNNEL * error)
        return servo(np.array([*(cube[:2] - d * (self.CONTACT + self.PRE)), push_z + height]), eef, CLOSED)


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
