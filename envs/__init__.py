"""Gymnasium environments for door opening, pushing and stacking (installed as `vinn_policy.envs`).

Importing this package registers `vinn/Door-v0`, `vinn/Push-v0` and `vinn/Stack-v0` with string entry
points, so robosuite and MuJoCo load only when an env is made:

    import gymnasium as gym
    import vinn_policy.envs  # noqa: F401
    env = gym.make("vinn/Door-v0", image_size=84)
"""

import gymnasium as gym

TASKS = {
    "door": ("vinn/Door-v0", "vinn_policy.envs.door:DoorEnv"),
    "push": ("vinn/Push-v0", "vinn_policy.envs.push:PushEnv"),
    "stack": ("vinn/Stack-v0", "vinn_policy.envs.stack:StackEnv"),
    "push_around": ("vinn/PushAround-v0", "vinn_policy.envs.push_around:PushAroundEnv"),  # two strategies, on purpose
}

for _env_id, _entry_point in TASKS.values():
    if _env_id not in gym.registry:
        # No TimeLimit wrapper: the env truncates at its own horizon and reports it.
        gym.register(_env_id, entry_point=_entry_point, disable_env_checker=True)


def env_id(task: str) -> str:
    """'door' -> 'vinn/Door-v0', with a helpful error for unknown tasks."""
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; available: {sorted(TASKS)}")
    return TASKS[task][0]


def make_env(task: str, **kwargs):
    """gym.make for a task name ('door', 'push', 'stack'); picklable, so worker processes can use it."""
    return gym.make(env_id(task), **kwargs)


def resolve_camera(task: str, camera: str | None = None) -> str:
    """The camera a task's images come from: `camera` if given (checked), else the task's own."""
    from vinn_policy.envs.robosuite_env import check_camera

    check_camera(camera)
    return camera or task_spec(task).camera


def task_spec(task: str):
    """The TaskSpec (camera, horizon, privileged keys) of a task, without making an env."""
    from importlib import import_module

    env_id(task)  # validates the name
    module, cls = TASKS[task][1].split(":")
    return getattr(import_module(module), cls).task
