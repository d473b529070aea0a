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
