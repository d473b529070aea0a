"""Scripted experts and demonstration files (installed as `vinn_policy.demos`)."""
