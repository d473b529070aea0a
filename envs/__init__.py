"""Gymnasium environments for door opening, pushing and stacking (installed as `vinn_policy.envs`)."""
