"""vinn-policy: visual imitation by nearest neighbours over self-supervised (BYOL) image embeddings.

    from vinn_policy import VINNPolicy, train_byol

Names are imported lazily, so `import vinn_policy.envs` does not pull in torch.
"""

from importlib import import_module

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
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vinn_policy' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
