"""Stacking: robosuite's Stack (pick cube A, place it on cube B), seen by the wrist camera (videos: agentview).

Privileged keys: cubeA_pos, cubeB_pos (m). Success: A lifted, not grasped, touching B.
"""

from vinn_policy.envs.robosuite_env import RobosuiteEnv, TaskSpec


class StackEnv(RobosuiteEnv):
    task = TaskSpec(
        robosuite_env="Stack",
        camera="robot0_eye_in_hand",  # in agentview the arm hides the cubes while grasping (VINN 0%)
        render_camera="agentview",
        object_keys={"cubeA_pos": 3, "cubeB_pos": 3},
    )
