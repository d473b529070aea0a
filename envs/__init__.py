"""Gymnasium environments for door opening, pushing and stacking (installed as `vinn_policy.envs`).

Importing this package registers `vinn/Door-v1`, `vinn/Push-v1` and `vinn/Stack-v1` with string entry
points, so robosuite and MuJoCo load only when an env is made:

    import gymnasium as gym
    import vinn_policy.envs  # noqa: F401
    env = gym.make("vinn/Door-v1", image_size=84)

`gym.make` wraps each env as Gymnasium users expect: PassiveEnvChecker, OrderEnforcing and a TimeLimit at the
task's horizon (`env.spec.max_episode_steps`). Observations hold only pixels and proprioception unless the env
is made with `privileged=True` (scripted experts and state oracles); render() returns None unless it is made
with `render_mode="rgb_array"` (videos).
"""

from numbers import Integral

import gymnasium as gym

TASKS = {
    "door": ("vinn/Door-v1", "vinn_policy.envs.door:DoorEnv"),
    "push": ("vinn/Push-v1", "vinn_policy.envs.push:PushEnv"),
    "stack": ("vinn/Stack-v1", "vinn_policy.envs.stack:StackEnv"),
    "push_around": ("vinn/PushAround-v1", "vinn_policy.envs.push_around:PushAroundEnv"),  # two strategies, on purpose
}
"""v1 (this release): door needs vision, success means a stable goal state, experts a memoryless imitator can
follow. v0 is not registered any more: v1 replaces it, and demonstrations recorded on v0 are refused by the
benchmark's demo cache (pipeline.ensure_demos) rather than mixed with v1's."""

HORIZONS = {"door": 150, "push": 150, "stack": 200, "push_around": 200}
"""Steps before truncation (~2-3x the scripted expert's episode length): each env's spec.max_episode_steps.
Kept here, not in the task files, because registering must not import the simulator."""

for _task, (_env_id, _entry_point) in TASKS.items():
    if _env_id not in gym.registry:
        gym.register(_env_id, entry_point=_entry_point, max_episode_steps=HORIZONS[_task])


def env_id(task: str) -> str:
    """'door' -> 'vinn/Door-v1', with a helpful error for unknown tasks."""
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; available: {sorted(TASKS)}")
    return TASKS[task][0]


def make_env(task: str, horizon: int | None = None, **kwargs) -> gym.Env:
    """gym.make for a task name ('door', 'push', 'stack'); picklable, so worker processes can use it.

    The step limit has one home: the TimeLimit wrapper gym.make adds from `max_episode_steps` (the env itself
    never truncates). `horizon` is that limit under the name this package uses, so `make_env(task, horizon=40)`
    is `gym.make(id, max_episode_steps=40)` and `env.spec.max_episode_steps` is always the limit in force.

    Args:
        task: a key of TASKS.
        horizon: steps before truncation; None keeps the task's (HORIZONS).
        **kwargs: the env's own arguments (image_size, camera, render_mode, privileged, ...).
    """
    name = env_id(task)
    if "max_episode_steps" in kwargs:
        raise ValueError("Pass the step limit as horizon=, not max_episode_steps= (make_env maps one to the other).")
    if horizon is not None and (isinstance(horizon, bool) or not isinstance(horizon, Integral) or horizon < 1):
        raise ValueError(f"horizon must be a positive int (steps), or None for {task}'s {HORIZONS[task]}; got {horizon!r}.")
    return gym.make(name, max_episode_steps=None if horizon is None else int(horizon), **kwargs)


def resolve_camera(task: str, camera: str | None = None) -> str:
    """The camera a task's images come from: `camera` if given (checked), else the task's own."""
    from vinn_policy.envs.robosuite_env import check_camera

    check_camera(camera)
    return camera or task_spec(task).camera


def task_spec(task: str):
    """The TaskSpec (cameras, privileged keys) of a task, without making an env (its horizon: HORIZONS)."""
    from importlib import import_module

    env_id(task)  # validates the name
    module, cls = TASKS[task][1].split(":")
    return getattr(import_module(module), cls).task


def task_variation(task: str) -> dict:
    """A task's TaskSpec.variation as JSON values (tuples as lists), as demonstration files record it."""
    import json

    return json.loads(json.dumps(task_spec(task).variation))
