"""BC training: the gripper index is resolved against the action size, and a loss that is NaN from the start is named."""

import numpy as np
import pytest

from vinn_policy.baselines.bc import BCConfig, BCPolicy

from .conftest import make_episodes
from .test_baselines import TINY


@pytest.fixture(scope="module")
def data():
    return make_episodes(n_episodes=5, length=8)


def test_gripper_index_minus_one_trains_as_the_last_dimension(tmp_path, data, tiny_encoder):
    frames, actions, eps = data  # 4-D actions, gripper last
    fits = {g: BCPolicy.fit_on_features(frames, actions, eps, tiny_encoder, BCConfig(**{**TINY, "gripper_index": g}, epochs=3),
                                        progress=False) for g in (-1, 3)}
    # Unresolved, -1 kept the gripper logit in the MSE as well as the BCE: another loss from the first step.
    assert fits[-1].report.train_loss == fits[3].report.train_loss
    assert fits[-1].report.val_loss == fits[3].report.val_loss
    assert fits[-1].config.gripper_index == 3
    fits[-1].save(tmp_path / "bc")
    assert BCPolicy.load(tmp_path / "bc").config.gripper_index == 3


@pytest.mark.parametrize("fit", ["fit_on_features", "fit_end_to_end"])
@pytest.mark.parametrize("index", [4, -5])
def test_gripper_index_outside_the_action_is_refused(data, tiny_encoder, fit, index):
    frames, actions, eps = data
    config = BCConfig(**{**TINY, "gripper_index": index})
    args = (frames, actions, eps, tiny_encoder, config) if fit == "fit_on_features" else (frames, actions, eps, config)
    with pytest.raises(ValueError, match=rf"gripper_index {index} is outside the action's 4 dimensions"):
        getattr(BCPolicy, fit)(*args, progress=False)


def nan_features(monkeypatch, encoder, frames, rows):
    """Make `encoder` embed `frames` with NaN features at `rows`."""
    features = encoder.embed(frames)
    features[rows] = np.nan
    monkeypatch.setattr(encoder, "embed", lambda images: features)


def test_nan_validation_loss_from_the_first_epoch_is_named(monkeypatch, data, tiny_encoder):
    frames, actions, eps = data
    nan_features(monkeypatch, tiny_encoder, frames, eps == 4)  # the validation episode only: training stays finite
    with pytest.raises(FloatingPointError, match=r"BC-rep: the validation loss at epoch 1 is nan.*learning rate.*inputs"):
        BCPolicy.fit_on_features(frames, actions, eps, tiny_encoder, BCConfig(**TINY, epochs=2), val_episodes=[4], progress=False)


def test_nan_training_loss_from_the_first_epoch_is_named(monkeypatch, data, tiny_encoder):
    frames, actions, eps = data
    nan_features(monkeypatch, tiny_encoder, frames, slice(None))
    with pytest.raises(FloatingPointError, match=r"BC-rep: the training loss at epoch 1 is nan.*learning rate.*inputs"):
        BCPolicy.fit_on_features(frames, actions, eps, tiny_encoder, BCConfig(**TINY, epochs=2), val_episodes=[4], progress=False)

