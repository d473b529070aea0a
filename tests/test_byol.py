"""BYOL: the loss falls, the target moves only by EMA, augmentations are per image, resume is exact."""

import numpy as np
import pytest
import torch
from torchvision.transforms import v2 as T

from vinn_policy.byol import BYOL, BYOLConfig, augment_batch, augmentation, byol_loss, train_byol, train_step
from vinn_policy.encoder import EncoderConfig, build_trunk

from .conftest import make_episodes, runs_channels_last


def tiny_byol_config(**overrides) -> BYOLConfig:
    base = dict(encoder=EncoderConfig(image_size=32), batch_size=8, hidden_dim=64, projection_dim=16, epochs=2)
    return BYOLConfig(**{**base, **overrides})


def test_loss_formula():
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z = torch.tensor([[3.0, 0.0], [2.0, 0.0]])
    torch.testing.assert_close(byol_loss(p, z), torch.tensor([0.0, 2.0]))


def test_loss_decreases_on_a_tiny_set():
    frames = make_episodes(n_episodes=4, length=4)[0]
    encoder, losses = train_byol(frames, tiny_byol_config(epochs=12), progress=False)
    assert runs_channels_last(encoder.trunk)
    assert len(losses) == 12 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.85 * np.mean(losses[:3]), losses  # seeded: 4.27 -> 3.27


def test_target_moves_only_by_ema():
    torch.manual_seed(0)
    model = BYOL(build_trunk("resnet18"), 512, 32, 8)
    opt = torch.optim.Adam(model.online_parameters(), lr=1e-2)
    target_before = [p.clone() for p in model.target_encoder.parameters()]
    x = torch.randn(4, 3, 32, 32)
    train_step(model, opt, x, x.flip(-1), tau=0.9)
    assert all(not p.requires_grad and p.grad is None for p in model.target_encoder.parameters())
    moved = 0
    for before, online, target in zip(target_before, model.online_encoder.parameters(), model.target_encoder.parameters(), strict=True):
        torch.testing.assert_close(target, 0.9 * before + 0.1 * online)
        moved += int(not torch.equal(target, before))
    assert moved > 0  # the online network did change, and the target followed by EMA only


def test_augmentations_are_drawn_per_image_and_never_flip():
    config = BYOLConfig(encoder=EncoderConfig(image_size=32))
    aug = augmentation(config)
    assert not any(isinstance(t, T.RandomHorizontalFlip) for t in aug.transforms)
    one = torch.from_numpy(make_episodes(1, 1)[0]).permute(0, 3, 1, 2)  # (1, 3, 32, 32) uint8
    views = augment_batch(one.repeat(6, 1, 1, 1), aug)  # the same image six times
    assert views.shape == (6, 3, 32, 32) and 0 <= views.min() and views.max() <= 1
    assert len({v.numpy().tobytes() for v in views}) == 6


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    frames = make_episodes(n_episodes=2, length=8)[0]
    straight, straight_losses = train_byol(frames, tiny_byol_config(epochs=2), progress=False)
    # "Interrupted" after epoch 1 (its checkpoint is on disk), then the same call again with epochs=2.
    train_byol(frames, tiny_byol_config(epochs=1), checkpoint_dir=tmp_path, progress=False)
    resumed, resumed_losses = train_byol(frames, tiny_byol_config(epochs=2), checkpoint_dir=tmp_path, progress=False)
    assert resumed_losses == pytest.approx(straight_losses, rel=1e-6)
    for (name, a), b in zip(straight.trunk.state_dict().items(), resumed.trunk.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    # And not what a fresh start would give: the resume really loaded epoch 1's state.
    fresh_one_epoch, _ = train_byol(frames, tiny_byol_config(epochs=1), progress=False)
    assert not torch.equal(fresh_one_epoch.trunk.conv1.weight, resumed.trunk.conv1.weight)


def test_resume_with_other_settings_is_refused(tmp_path):
    frames = make_episodes(n_episodes=2, length=4)[0]
    train_byol(frames, tiny_byol_config(epochs=1), checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="other settings.*lr"):
        train_byol(frames, tiny_byol_config(epochs=2, lr=1e-3), checkpoint_dir=tmp_path, progress=False)


@pytest.mark.parametrize("overrides, match", [({"batch_size": 1}, "batch_size"), ({"tau": 1.0}, "tau"), ({"epochs": 0}, "epochs")])
def test_bad_config(overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny_byol_config(**overrides)


def test_paper_preset():
    paper = BYOLConfig.paper()
    assert (paper.encoder.arch, paper.encoder.image_size, paper.epochs, paper.batch_size, paper.lr, paper.tau) == (
        "resnet50", 224, 100, 168, 3e-4, 0.99)
