"""Door opening: robosuite's Door with the latch on, seen from the side.

Privileged keys: handle_pos (lever tip, m), door_pos (m), hinge_qpos (door angle, rad; success > 0.3),
handle_qpos (lever angle, rad; the latch releases past ~1.3).
"""

from vinn_policy.envs.robosuite_env import RobosuiteEnv, TaskSpec


class DoorEnv(RobosuiteEnv):
    task = TaskSpec(
        robosuite_env="Door",
        camera="sideview",  # agentview barely shows the door
        render_camera="sideview",
        object_keys={"handle_pos": 3, "door_pos": 3, "hinge_qpos": 1, "handle_qpos": 1},
        robosuite_kwargs={"use_latch": True},
    )
