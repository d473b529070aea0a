"""BC training: the gripper index, NaN losses, the robomimic and paper recipes, BC-rep's feature scaling, plateaus and convergence."""

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vinn_policy.baselines.bc import BCConfig, BCPolicy
from vinn_policy.encoder import EncoderConfig, RandomCrop, SpatialSoftmax

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



def test_spatial_softmax_returns_the_expected_image_coordinates_of_each_heatmap():
    pool = SpatialSoftmax(in_channels=1, keypoints=1)
    with torch.no_grad():
        pool.conv.weight.fill_(1.0)
        pool.conv.bias.zero_()
    x = torch.zeros(2, 1, 3, 5)
    x[0, 0, 0, 4] = 50.0  # top right: x = 1, y = -1
    x[1, 0, 2, 0] = 50.0  # bottom left
    np.testing.assert_allclose(pool(x).detach().numpy(), [[[1.0, -1.0]], [[-1.0, 1.0]]], atol=1e-4)


def test_random_crop_draws_a_window_per_image_in_training_and_the_centre_at_test():
    crop = RandomCrop(4)
    images = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8).repeat(16, 1, 1, 1)  # (32, 1, 8, 8)
    assert torch.equal(crop.eval()(images), images[:, :, 2:6, 2:6])
    torch.manual_seed(0)
    crops = crop.train()(images)
    assert crops.shape == (32, 1, 4, 4)
    corners = {(i % 2, int(c[0, 0, 0])) for i, c in enumerate(crops)}
    for i, c in enumerate(crops):  # each is a contiguous window of its own image
        top, left = divmod(int(c[0, 0, 0] - images[i, 0, 0, 0]), 8)
        assert torch.equal(c, images[i, :, top : top + 4, left : left + 4])
    assert len(corners) > 4  # images draw their own windows


@pytest.mark.parametrize("recipe,kind", [(BCConfig.robomimic, "bc"), (BCConfig.paper_recipe, "bc_paper")])
def test_each_end_to_end_recipe_round_trips_through_its_artefact(tmp_path, data, recipe, kind):
    frames, actions, eps = data
    config = recipe(EncoderConfig(image_size=32), epochs=2, batch_size=8, gripper_index=3, hidden=(16,))
    policy = BCPolicy.fit_end_to_end(frames, actions, eps, config, progress=False)
    assert policy.name == kind
    loaded = BCPolicy.load(policy.save(tmp_path / kind))
    assert loaded.name == kind and loaded.config == policy.config
    np.testing.assert_array_equal(loaded.act_batch(frames[:5]), policy.act_batch(frames[:5]))  # the centre crop at test: deterministic


def test_an_end_to_end_bcs_trunk_serves_vinn_as_its_encoder_and_round_trips(tmp_path, data):
    from vinn_policy.baselines.bc import feature_encoder
    from vinn_policy.policy import VINNPolicy

    frames, actions, eps = data
    config = BCConfig.robomimic(EncoderConfig(image_size=40), epochs=1, batch_size=8, gripper_index=3, hidden=(16,), crop=36)
    bc = BCPolicy.fit_end_to_end(frames, actions, eps, config, progress=False)
    encoder = feature_encoder(bc)
    assert encoder.feature_dim == config.feature_dim and encoder.embed(frames[:3]).shape == (3, config.feature_dim)
    vinn = VINNPolicy.fit(frames, actions, eps, encoder=encoder, k=3, gripper_index=3)
    loaded = VINNPolicy.load(vinn.save(tmp_path / "vinn_bc_encoder"))
    assert loaded.encoder.origin == "bc" and loaded.encoder.trunk_spec == {"pooling": "spatial_softmax", "keypoints": 32, "projection": 64, "crop": 36}
    np.testing.assert_array_equal(loaded.encoder.embed(frames), encoder.embed(frames))  # BC's centre crop and keypoints
    np.testing.assert_array_equal(loaded.act_batch(frames[:5]), vinn.act_batch(frames[:5]))
    assert "encoder_trunk" not in bc.encoder.meta()  # BC's own artefact (and its digest) is unchanged
    frozen = BCPolicy.fit_on_features(frames, actions, eps, encoder, config, progress=False)
    with pytest.raises(ValueError, match="BC-rep's features are its given encoder's"):
        feature_encoder(frozen)


def test_robomimic_recipe_is_spatial_softmax_on_76_of_84_px_crops():
    config = BCConfig.robomimic()
    assert (config.pooling, config.crop, config.keypoints, config.hidden, config.augment) == ("spatial_softmax", 76, 32, (1024, 1024), False)
    assert BCConfig.paper_recipe().pooling == "avg"
    with pytest.raises(ValueError, match="crop must be between 32 and the encoder's image_size 84"):
        BCConfig(crop=90)


def test_bc_rep_standardises_its_features_so_their_scale_does_not_change_training(data, tiny_encoder):
    frames, actions, eps = data
    scaled = copy.deepcopy(tiny_encoder)
    scaled.trunk = torch.nn.Sequential(scaled.trunk, Scale(1000.0))
    config = BCConfig(**TINY, epochs=4)
    plain, big = (BCPolicy.fit_on_features(frames, actions, eps, e, config, val_episodes=[4], progress=False) for e in (tiny_encoder, scaled))
    assert big.report.val_loss == pytest.approx(plain.report.val_loss, rel=1e-3)
    np.testing.assert_allclose(big.head.feature_mean.numpy(), 1000 * plain.head.feature_mean.numpy(), rtol=1e-4)


def test_training_lowers_the_learning_rate_on_plateaus_and_reports_whether_it_converged(data, tiny_encoder):
    frames, actions, eps = data
    converged = BCPolicy.fit_on_features(frames, actions, eps, tiny_encoder, BCConfig(**{**TINY, "patience": 3}, epochs=500, lr=3e-3,
                                                                                      lr_patience=1), val_episodes=[4], progress=False).report
    assert converged.converged(3) and len(converged.val_loss) < 500
    assert len(converged.val_loss) - 1 - (converged.best_epoch - 1) == 3  # stopped after `patience` epochs without a new best
    assert converged.lr[0] == 3e-3 and min(converged.lr) < 3e-3  # lowered on a plateau before stopping
    capped = BCPolicy.fit_on_features(frames, actions, eps, tiny_encoder, BCConfig(**{**TINY, "patience": 50}, epochs=2),
                                      val_episodes=[4], progress=False).report
    assert not capped.converged(50) and len(capped.val_loss) == 2


def test_a_training_at_its_cap_converged_only_if_its_last_epochs_improved_by_less_than_the_tolerance():
    from vinn_policy.baselines.bc import TrainReport

    def at_cap(val_loss):
        return TrainReport(train_loss=val_loss, val_loss=val_loss, best_epoch=len(val_loss), stopped_early=False, seconds=1.0)

    assert at_cap([1.0, 0.5, 0.4, 0.399, 0.3995, 0.3985]).converged(3)  # 0.4 -> 0.3985: new bests by 0.4%
    assert not at_cap([1.0, 0.5, 0.4, 0.35, 0.3, 0.25]).converged(3)  # still falling
    assert not at_cap([1.0, 0.5]).converged(3)  # too short to tell


class Scale(torch.nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def test_a_bc_rep_saved_before_feature_scaling_loads_as_unscaled(tmp_path, data, tiny_encoder):
    frames, actions, eps = data
    policy = BCPolicy.fit_on_features(frames, actions, eps, tiny_encoder, BCConfig(**TINY, epochs=2, standardize=False), progress=False)
    expected = policy.act_batch(frames[:4])
    for name in ("feature_mean", "feature_scale"):  # saved as BC_VERSION 1 did, without them
        del policy.head._buffers[name]
    path = policy.save(tmp_path / "old")
    np.testing.assert_array_equal(BCPolicy.load(path).act_batch(frames[:4]), expected)


def test_bc_rep_on_features_the_caller_embedded_trains_as_on_its_own_embedding(data, tiny_encoder):
    frames, actions, eps = data
    config = BCConfig(**TINY, epochs=2)
    own = BCPolicy.fit_on_features(frames, actions, eps, tiny_encoder, config, val_episodes=[4], progress=False)
    given = BCPolicy.fit_on_features(frames, actions, eps, tiny_encoder, config, val_episodes=[4], progress=False,
                                     features=tiny_encoder.embed(frames))
    assert given.report.val_loss == own.report.val_loss
    with pytest.raises(ValueError, match=r"features must be the 40 frames' 512-d embeddings; got shape \(39, 512\)"):
        BCPolicy.fit_on_features(frames, actions, eps, tiny_encoder, config, progress=False, features=tiny_encoder.embed(frames[:-1]))


def test_an_interrupted_cached_bc_resumes_from_its_last_epoch_to_the_same_policy(tmp_path, data, monkeypatch):
    from vinn_policy.baselines import bc
    from vinn_policy.harness.pipeline import cached_bc

    frames, actions, eps = data
    # BYOL's augmentations draw on torch's global generator: the resumed run must restore it, not just the weights.
    config = BCConfig(encoder=EncoderConfig(image_size=32), batch_size=8, epochs=4, patience=0, augment=True)
    whole, _ = cached_bc(frames, actions, eps, config, [4], cache_dir=tmp_path / "whole", progress=False)

    real_save, saves = bc._save_checkpoint, []

    def save_then_crash(*args, **kwargs):
        real_save(*args, **kwargs)
        saves.append(1)
        if len(saves) == 2:
            raise KeyboardInterrupt  # killed after epoch 2's checkpoint reached the disk

    monkeypatch.setattr(bc, "_save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        cached_bc(frames, actions, eps, config, [4], cache_dir=tmp_path / "cut", progress=False)
    monkeypatch.setattr(bc, "_save_checkpoint", real_save)
    [checkpoint] = (tmp_path / "cut").glob("bc-*.checkpoint")
    resumed, info = cached_bc(frames, actions, eps, config, [4], cache_dir=tmp_path / "cut", progress=False)
    assert len(saves) == 2 and not info["cached"]
    assert resumed.report.train_loss == whole.report.train_loss and resumed.report.val_loss == whole.report.val_loss
    np.testing.assert_array_equal(resumed.act_batch(frames[:4]), whole.act_batch(frames[:4]))
    assert not checkpoint.exists() and (tmp_path / "cut" / checkpoint.name.removesuffix(".checkpoint")).exists()


def test_a_bc_checkpoint_made_with_other_settings_is_refused(tmp_path, data, tiny_encoder):
    frames, actions, eps = data
    BCPolicy.fit_on_features(frames, actions, eps, tiny_encoder, BCConfig(**TINY, epochs=1), val_episodes=[4],
                             progress=False, checkpoint_dir=tmp_path)
    longer = BCPolicy.fit_on_features(frames, actions, eps, tiny_encoder, BCConfig(**TINY, epochs=2), val_episodes=[4],
                                      progress=False, checkpoint_dir=tmp_path)  # a raised cap trains on
    assert len(longer.report.val_loss) == 2
    with pytest.raises(ValueError, match="other settings.*lr"):
        BCPolicy.fit_on_features(frames, actions, eps, tiny_encoder, BCConfig(**{**TINY, "lr": 0.5}, epochs=3),
                                 val_episodes=[4], progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="other settings or data.*data"):
        BCPolicy.fit_on_features(frames, actions * 2, eps, tiny_encoder, BCConfig(**TINY, epochs=3), val_episodes=[4],
                                 progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="at epoch 2, past the 1 asked for"):
        BCPolicy.fit_on_features(frames, actions, eps, tiny_encoder, BCConfig(**TINY, epochs=1), val_episodes=[4],
                                 progress=False, checkpoint_dir=tmp_path)


def test_cached_bc_trains_afresh_over_its_own_unreadable_checkpoint(tmp_path, data, tiny_encoder):
    from vinn_policy.harness.pipeline import cached_bc

    frames, actions, eps = data
    config = BCConfig(**TINY, epochs=2)
    _, info = cached_bc(frames, actions, eps, config, [4], tiny_encoder, cache_dir=tmp_path, progress=False)
    folder = Path(info["path"])
    shutil.rmtree(folder)
    broken = folder.with_name(folder.name + ".checkpoint") / "bc_checkpoint"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text("{not json")
    policy, info = cached_bc(frames, actions, eps, config, [4], tiny_encoder, cache_dir=tmp_path, progress=False)
    assert not info["cached"] and len(policy.report.val_loss) == 2 and not broken.parent.exists()


def test_the_report_says_how_each_bc_training_ended():
    from vinn_policy.harness.report import convergence_cell

    assert convergence_cell({"stopped_early": True, "converged": True, "patience": 6}) == "yes"
    assert convergence_cell({"stopped_early": False, "converged": True, "patience": 6}).startswith("yes: on a plateau at the cap")
    assert convergence_cell({"stopped_early": False, "converged": False, "patience": 6}) == "**no: still improving at the cap**"
