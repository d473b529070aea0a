"""The baselines VINN is compared with, each with the policy surface reset() / act(obs) / save() / load():

    bc.py            BC end-to-end (ResNet trunk + MLP head) and BC-rep (frozen encoder + head)
    open_loop.py     replay the demonstration whose first frame is nearest
    random_actions.py  uniform random actions
    state_oracle.py  VINN's regression over privileged simulator state (an analysis tool, not a baseline)

`load_policy(path)` loads any saved policy (VINN or a baseline) by the kind in its config.json.
"""

from __future__ import annotations

import json
from pathlib import Path

from vinn_policy.artefact import META_FILE, ArtefactError
from vinn_policy.baselines.bc import BCConfig, BCPolicy
from vinn_policy.baselines.open_loop import OpenLoopPolicy
from vinn_policy.baselines.random_actions import RandomPolicy
from vinn_policy.baselines.state_oracle import StateKNNPolicy, state_features
from vinn_policy.policy import VINNPolicy

__all__ = ["BCConfig", "BCPolicy", "OpenLoopPolicy", "RandomPolicy", "StateKNNPolicy", "load_policy", "state_features"]

POLICY_KINDS = {"vinn_policy": VINNPolicy, "bc_policy": BCPolicy, "open_loop_policy": OpenLoopPolicy, "random_policy": RandomPolicy}


def load_policy(path: str | Path) -> object:
    """Load any saved policy by the `kind` recorded in its config.json."""
    try:
        kind = json.loads((Path(path) / META_FILE).read_text()).get("kind")
    except (OSError, json.JSONDecodeError, AttributeError) as e:
        raise ArtefactError(f"{path} is not a saved policy ({e}).") from e
    if kind not in POLICY_KINDS:
        raise ArtefactError(f"{path} holds a {kind!r} artefact; policies are {sorted(POLICY_KINDS)}.")
    return POLICY_KINDS[kind].load(path)
