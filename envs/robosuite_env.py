"""The one robosuite -> Gymnasium adapter. Task files (door.py, push.py, stack.py) only fill in a TaskSpec.

Action: float32 Box [-1, 1]^4 = [dx, dy, dz, grip], end-effector delta position in the robot base frame
(1.0 = 5 cm per 20 Hz step, OSC_POSITION controller) and gripper (-1 open, +1 closed).

Observation (Dict, all fixed-size):
    image                 uint8 (S, S, 3), upright (opencv convention), from the task's camera (or `camera=`)
    <camera>_image        uint8 (S, S, 3), the same from each of `extra_cameras=` (e.g. agentview_image), for
                          policies that look through more than one camera
    robot0_eef_pos        float32 (3,)  gripper site position, world frame (m)
    robot0_gripper_qpos   float32 (2,)  finger joint positions
    <task keys>           float32       privileged object state, only with `privileged=True` (see each task):
                                        for scripted experts and state oracles, never for image policies

info["is_success"] every step; `terminated` on success (if terminate_on_success). `truncated` is always False:
the step limit is the TimeLimit wrapper that gym.make adds from the spec's max_episode_steps (envs/__init__.py).
render() is None unless `render_mode="rgb_array"`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

# robosuite forces EGL when MUJOCO_GL is unset; say so explicitly (headless Mesa works with egl/osmesa).
os.environ.setdefault("MUJOCO_GL", "egl")


class _QuietRobosuite(logging.Filter):
    """Drops robosuite's per-process import advice (private macros, optional robot models, GR1 IK) and INFO lines."""

    ADVICE = ("macro file", "setup_macros", "robosuite_models", "mink-based")

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING and not any(a in record.getMessage() for a in self.ADVICE)


logging.getLogger("robosuite_logs").addFilter(_QuietRobosuite())  # robosuite's logger; it survives its import

CONTROL_FREQ = 20
START_STEPS, START_STEP = 20, 0.05  # hand_start: steps, and metres per unit action (OSC_POSITION's limit)
CAMERAS = ("agentview", "frontview", "birdview", "sideview", "robot0_robotview", "robot0_eye_in_hand")
"""The cameras of robosuite's scenes with a Panda (robot0_eye_in_hand: on the wrist, looking down past the fingers)."""


WRIST_CAMERA = "robot0_eye_in_hand"
UNSEEN_BY_WRIST = ("fixed_mount0", "robot0_base", "robot0_link")
"""Bodies behind the wrist camera: the mount and arm links are ~90% of the scene's triangles, and the CPU
rasteriser pays for every one of them in every frame, seen or not."""
HIDDEN_GROUP = 3  # a geom group MuJoCo does not draw by default; render() turns it on for videos


class HeldFor:
    """Whether a condition has held for `steps` consecutive simulated control steps: the success of a goal state
    (a stack, a cube at rest on its goal) rather than of a moment passing through it.

    The count advances once per simulated instant, however often it is asked: robosuite calls _check_success
    from reward() and the Gymnasium adapter calls it again after each step.
    """

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.reset()

    def reset(self) -> None:
        self.count, self._counted_at = 0, None

    def update(self, sim_time: float, holds: Callable[[], bool]) -> bool:
        if sim_time != self._counted_at:
            self._counted_at = sim_time
            self.count = self.count + 1 if holds() else 0
        return self.count >= self.steps


def check_camera(camera: str | None) -> None:
    if camera is not None and camera not in CAMERAS:
        raise ValueError(f"camera must be one of {CAMERAS}; got {camera!r}.")


@dataclass(frozen=True)
class TaskSpec:
    """What differs between tasks."""

    robosuite_env: str
    camera: str
    """Camera of the image observation."""
    render_camera: str
    """Camera of render() (videos)."""
    object_keys: dict[str, int]
    """Privileged robosuite observation keys passed through, with their sizes."""
    robosuite_kwargs: dict[str, Any] = field(default_factory=dict)
    variation: dict[str, Any] = field(default_factory=dict)
    """How episodes vary beyond robosuite's defaults (ranges, noise); demonstration files record it, and the
    benchmark's demo cache refuses files drawn from another variation."""
    hand_start: tuple[float, float, float] | None = None
    """Half-widths (m) of a box around robosuite's start in which each episode's hand starts: reset drives it
    to a uniform point there (START_STEPS unrecorded steps), so its posture stays one the arm can work from."""


def _controller_config() -> dict:
    """The Panda's default composite controller with the arm switched to 3-D delta position (OSC_POSITION)."""
    from robosuite.controllers import load_composite_controller_config

    config = load_composite_controller_config(robot="Panda")
    arm = config["body_parts"]["right"]
    arm["type"] = "OSC_POSITION"
    arm["output_max"], arm["output_min"] = arm["output_max"][:3], arm["output_min"][:3]
    for key in ("orientation_limits", "uncouple_pos_ori"):
        arm.pop(key, None)
    return config


def _seed_samplers(sampler: Any, rng: np.random.Generator) -> None:
    """Placement samplers keep their own reference to the env's RNG; replace it (recursively)."""
    if sampler is None:
        return
    sampler.rng = rng
    for child in getattr(sampler, "samplers", {}).values():
        _seed_samplers(child, rng)


class RobosuiteEnv(gym.Env):
    """A robosuite manipulation task as a Gymnasium env with camera images (see module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": CONTROL_FREQ}
    task: TaskSpec  # set by each task subclass

    def __init__(
        self,
        image_size: int = 84,
        render_mode: str | None = None,
        render_size: int = 256,
        terminate_on_success: bool = True,
        fast_render: bool = True,
        camera: str | None = None,
        privileged: bool = False,
        extra_cameras: tuple[str, ...] = (),
    ) -> None:
        import robosuite
        import robosuite.macros as macros

        # Upright images. Collection and evaluation must share this convention or kNN silently breaks.
        macros.IMAGE_CONVENTION = "opencv"
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array'; got {render_mode!r}.")
        check_camera(camera)
        extra_cameras = tuple(extra_cameras)
        for extra in extra_cameras:
            check_camera(extra)
        if not isinstance(image_size, int) or image_size < 8:
            raise ValueError(f"image_size must be an int >= 8; got {image_size!r}.")
        if not isinstance(privileged, bool):
            raise ValueError(f"privileged must be True or False; got {privileged!r}.")
        self.image_size, self.render_size, self.render_mode = image_size, render_size, render_mode
        self.privileged = privileged
        self.terminate_on_success, self.fast_render = terminate_on_success, fast_render
        self.camera = camera or self.task.camera  # e.g. "robot0_eye_in_hand" for the wrist camera
        if self.camera in extra_cameras or len(set(extra_cameras)) != len(extra_cameras):
            raise ValueError(f"extra_cameras must be distinct cameras other than the image's {self.camera!r}; got {extra_cameras}.")
        self.extra_cameras = extra_cameras
        self.cameras = (self.camera, *extra_cameras)
        self._camera_obs = True  # set_camera_obs(False) skips rendering it
        self._rs = robosuite.make(
            self.task.robosuite_env,
            robots="Panda",
            controller_configs=_controller_config(),
            has_renderer=False,
            has_offscreen_renderer=True,
            use_camera_obs=True,
            use_object_obs=True,
            camera_names=list(self.cameras),
            camera_heights=image_size,
            camera_widths=image_size,
            control_freq=CONTROL_FREQ,
            ignore_done=True,  # the step limit is the TimeLimit wrapper's; robosuite's done would arrive as a crash
            hard_reset=False,  # a hard reset rebuilds model and GL context (~1.7 s); soft takes ~0.02 s
            reward_shaping=False,
            seed=0,  # fixes the model (e.g. sampled cube sizes); episodes are seeded in reset()
            **self.task.robosuite_kwargs,
        )
        if self.cameras == (WRIST_CAMERA,) and fast_render:  # without shadows nothing hidden leaves a trace; others see the arm
            self._hide_unseen_geoms()
        self._render_context = None
        image = spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        # robosuite computes the object state either way (use_object_obs above), so both variants simulate and
        # draw random numbers identically; without `privileged` it just never reaches the policy.
        vectors = {"robot0_eef_pos": 3, "robot0_gripper_qpos": 2, **(self.task.object_keys if privileged else {})}
        self.observation_space = spaces.Dict(
            # +-10 (m, rad): far outside anything reachable, but finite so spaces can be sampled and checked.
            {"image": image, **{f"{c}_image": image for c in extra_cameras},
             **{k: spaces.Box(-10.0, 10.0, (n,), np.float32) for k, n in vectors.items()}}
        )
        self.action_space = spaces.Box(-1.0, 1.0, (4,), np.float32)

    def _hide_unseen_geoms(self) -> None:
        """Wrist images render ~2x faster without the arm behind the camera, pixel for pixel the same
        (tests/test_envs.py checks it); videos from other cameras still show the arm (see render)."""
        model = self._rs.sim.model._model
        for i in range(model.ngeom):
            if model.geom_group[i] == 1 and model.body(model.geom_bodyid[i]).name.startswith(UNSEEN_BY_WRIST):  # 1: visual
                model.geom_group[i] = HIDDEN_GROUP

    def _apply_fast_render(self) -> None:
        """No MSAA, reflections or shadows: ~3x faster frames on a CPU rasteriser (docs/envs-and-demos.md)."""
        import mujoco

        ctx = self._rs.sim._render_context_offscreen
        if ctx is None or ctx is self._render_context:
            return
        self._render_context = ctx
        if self.fast_render:
            ctx.gl_ctx.make_current()
            self._rs.sim.model.vis.quality.offsamples = 0
            ctx.con.free()
            ctx._set_mujoco_context_and_buffers()
            for flag in (mujoco.mjtRndFlag.mjRND_REFLECTION, mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_SKYBOX):
                ctx.scn.flags[flag] = 0

    def _make_current(self) -> None:
        """robosuite makes its GL context current only when creating it; with two envs in one process
        (train + eval, or a checker making and closing a copy) the other env's context would be used and
        the images would be garbage. Re-assert ours before anything renders."""
        ctx = self._rs.sim._render_context_offscreen
        if ctx is not None:
            ctx.gl_ctx.make_current()

    def _move_hand_to_start(self, raw: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Drive the open hand to a uniform point of the hand_start box around where robosuite put it."""
        half = np.asarray(self.task.hand_start)
        target = raw["robot0_eef_pos"] + rng.uniform(-half, half)
        self._render_camera(False)  # unrecorded steps: nothing to render
        try:
            for _ in range(START_STEPS):
                delta = np.clip((target - raw["robot0_eef_pos"]) / START_STEP, -1.0, 1.0)
                raw, _, _, _ = self._rs.step(np.array([*delta, -1.0]))
        finally:
            self._render_camera(self._camera_obs)
        return raw

    def _render_camera(self, enabled: bool) -> None:
        """Switch robosuite's rendering of the image observations, leaving set_camera_obs's setting alone."""
        for camera in self.cameras:
            self._rs.modify_observable(f"{camera}_image", "enabled", bool(enabled))

    def set_camera_obs(self, enabled: bool) -> None:
        """Turn camera rendering off (image = zeros) for policies that never look, e.g. the random baseline:
        rendering is most of a step's cost, and the simulation does not depend on it."""
        self._render_camera(enabled)
        self._camera_obs = bool(enabled)

    def _observation(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        obs = {}
        for key, camera in (("image", self.camera), *((f"{c}_image", c) for c in self.extra_cameras)):
            image = raw[f"{camera}_image"] if self._camera_obs else np.zeros(self.observation_space[key].shape, np.uint8)
            obs[key] = np.ascontiguousarray(image, dtype=np.uint8)
        for key, space in self.observation_space.spaces.items():
            if key not in obs:
                obs[key] = np.asarray(raw[key], dtype=np.float32).reshape(space.shape)
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        # robosuite draws every random choice (robot noise, object placement) from env.rng; derive it
        # from Gymnasium's seeded generator so reset(seed=s) fixes the episode and reset() continues it.
        rng = np.random.default_rng(int(self.np_random.integers(2**63)))
        self._rs.rng = rng
        _seed_samplers(getattr(self._rs, "placement_initializer", None), rng)
        self._make_current()
        self._apply_fast_render()
        raw = self._rs.reset()
        if self.task.hand_start is not None:
            raw = self._move_hand_to_start(raw, rng)
        self._apply_fast_render()
        # Camera observations were rendered before fast-render could apply on the very first reset.
        raw = self._rs._get_observations(force_update=True)
        return self._observation(raw), {"is_success": bool(self._rs._check_success())}

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (4,) or not np.isfinite(action).all():
            raise ValueError(f"Expected a finite action [dx, dy, dz, grip] of shape (4,); got {np.asarray(action).shape}.")
        self._make_current()
        raw, reward, _, _ = self._rs.step(np.clip(action, -1.0, 1.0))
        success = bool(self._rs._check_success())
        terminated = success and self.terminate_on_success
        # truncated=False: the time limit is handled by the TimeLimit wrapper (spec.max_episode_steps).
        return self._observation(raw), float(reward), terminated, False, {"is_success": success}

    def render(self) -> np.ndarray | None:
        """An upright rgb frame (render_size, render_size, 3) from the task's render camera; None unless the env
        was made with render_mode="rgb_array"."""
        if self.render_mode is None:
            return None
        self._make_current()
        groups = self._rs.sim._render_context_offscreen.vopt.geomgroup
        groups[HIDDEN_GROUP] = 1  # the whole arm, in videos
        try:
            frame = self._rs.sim.render(camera_name=self.task.render_camera, width=self.render_size, height=self.render_size)
        finally:
            groups[HIDDEN_GROUP] = 0
        return np.ascontiguousarray(frame[::-1])  # MuJoCo reads pixels bottom-up

    def sim_state(self) -> np.ndarray:
        """The flattened MuJoCo state (robomimic's `states`)."""
        return np.asarray(self._rs.sim.get_state().flatten(), dtype=np.float64)

    def close(self) -> None:
        if getattr(self, "_rs", None) is not None:
            self._rs.close()
            self._rs = None
