"""vinn-policy: visual imitation by nearest neighbours over self-supervised (BYOL) image embeddings.

    from vinn_policy import VINNPolicy, train_byol

The package top is the method (encoder, byol, lwr, search, database, policy, artefact, distributed);
`vinn_policy.baselines` holds what it is compared with, `vinn_policy.harness` the benchmark harness
(rollouts, evaluation, caches, reports, videos), `vinn_policy.envs` and `vinn_policy.demos` the tasks and
their demonstrations. Names are imported lazily, so `import vinn_policy.envs` does not pull in torch.
"""

import sys
from importlib import import_module
from importlib.abc import MetaPathFinder

__version__ = "0.1.0"

_EXPORTS = {
    "ArtefactError": "vinn_policy.artefact",
    "BYOLConfig": "vinn_policy.byol",
    "train_byol": "vinn_policy.byol",
    "EmbeddingDatabase": "vinn_policy.database",
    "Neighbours": "vinn_policy.database",
    "Encoder": "vinn_policy.encoder",
    "EncoderConfig": "vinn_policy.encoder",
    "knn": "vinn_policy.lwr",
    "softmin_blend": "vinn_policy.lwr",
    "softmin_weights": "vinn_policy.lwr",
    "VINNConfig": "vinn_policy.policy",
    "VINNPolicy": "vinn_policy.policy",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if f"vinn_policy.{name}" in MOVED:  # `from vinn_policy import bc`: say where it went
        raise ModuleNotFoundError(f"vinn_policy.{name} moved to {MOVED[f'vinn_policy.{name}']}: import it from there.", name=name)
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vinn_policy' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)


MOVED = {
    "vinn_policy.bc": "vinn_policy.baselines.bc",
    "vinn_policy.splits": "vinn_policy.baselines.bc",
    **{f"vinn_policy.{m}": f"vinn_policy.harness.{m}"
       for m in ("benchmark", "pipeline", "evaluation", "rollout", "offline", "report", "results", "video")},
}
"""Modules of earlier releases and where they live now."""


class _MovedModules(MetaPathFinder):
    """Turns `import vinn_policy.<old>` into an error that names the new place (instead of a bare 'No module')."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name in MOVED:
            raise ModuleNotFoundError(f"{name} moved to {MOVED[name]}: import it from there.", name=name)


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.append(_MovedModules())
