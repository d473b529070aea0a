"""Cache keys of trained stages: the training code's version is part of them, the checkpoint schedule is not."""

from pathlib import Path

import numpy as np
import pytest

from vinn_policy import Encoder, EncoderConfig, byol
from vinn_policy.baselines import bc
from vinn_policy.baselines.bc import ActionHead, BCConfig, BCPolicy
from vinn_policy.byol import BYOLConfig
from vinn_policy.harness import pipeline
from vinn_policy.harness.pipeline import cached_bc

from .conftest import make_episodes


@pytest.fixture
def trainings(monkeypatch):
    """Stub BYOL and BC training (instant); returns the list of stages trained."""
    calls = []
    encoder = Encoder(EncoderConfig(image_size=32))

    def train_byol(frames, config, checkpoint_dir, progress):
        calls.append("byol")
        return encoder, [1.0]

    def fit_end_to_end(cls, frames, actions, episode_ids, config, **kwargs):
        calls.append("bc")
        return BCPolicy(encoder, ActionHead(encoder.feature_dim, (8,), actions.shape[1], None), config, frozen=False)

    monkeypatch.setattr(pipeline, "train_byol", train_byol)
    monkeypatch.setattr(BCPolicy, "fit_end_to_end", classmethod(fit_end_to_end))
    return calls


def test_byol_cache_key_has_the_training_version_but_not_the_checkpoint_schedule(tmp_path, monkeypatch, trainings):
    frames = make_episodes(n_episodes=2, length=2)[0]
    config = BYOLConfig(encoder=EncoderConfig(image_size=32), epochs=2)
    first = pipeline.cached_byol(frames, config, tmp_path, progress=False)[1]
    again = pipeline.cached_byol(frames, BYOLConfig(encoder=config.encoder, epochs=2, checkpoint_every=2), tmp_path, progress=False)[1]
    assert again["cached"] and again["path"] == first["path"]
    monkeypatch.setattr(byol, "BYOL_VERSION", byol.BYOL_VERSION + 1)  # training changed: the old encoder is not reused
    newer = pipeline.cached_byol(frames, config, tmp_path, progress=False)[1]
    assert not newer["cached"] and newer["path"] != first["path"]
    assert trainings == ["byol", "byol"]


def test_bc_cache_key_has_the_training_version(tmp_path, monkeypatch, trainings):
    frames, actions, episodes = make_episodes(n_episodes=2, length=2)
    config = BCConfig(encoder=EncoderConfig(image_size=32))
    first = pipeline.cached_bc(frames, actions, episodes, config, np.array([1]), cache_dir=tmp_path, progress=False)[1]
    assert pipeline.cached_bc(frames, actions, episodes, config, np.array([1]), cache_dir=tmp_path, progress=False)[1]["cached"]
    monkeypatch.setattr(bc, "BC_VERSION", bc.BC_VERSION + 1)
    newer = pipeline.cached_bc(frames, actions, episodes, config, np.array([1]), cache_dir=tmp_path, progress=False)[1]
    assert not newer["cached"] and newer["path"] != first["path"]
    assert trainings == ["bc", "bc"]


def test_a_corrupt_cache_entry_is_retrained_not_refused(tmp_path):
    frames, actions, episodes = make_episodes(n_episodes=4, length=6)
    config = BCConfig(encoder=EncoderConfig(image_size=32), epochs=1, batch_size=8)
    _, info = cached_bc(frames, actions, episodes, config, [3], cache_dir=tmp_path)
    (Path(info["path"]) / "config.json").write_text("{not json")  # e.g. a disk filled mid-write by another tool
    policy, again = cached_bc(frames, actions, episodes, config, [3], cache_dir=tmp_path)
    assert not again["cached"] and again["path"] == info["path"] and policy.act_batch(frames[:1]).shape == (1, 4)
