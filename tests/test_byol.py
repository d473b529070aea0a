"""BYOL: the loss pairs the views crosswise and falls without collapse, the target moves only by EMA, augmentations
are per image and never flip, resume is exact."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms
from torch import nn
from torchvision.transforms import v2 as T

from vinn_policy import byol
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


def test_forward_pairs_each_prediction_with_the_other_views_target():
    torch.manual_seed(0)
    model = BYOL(nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 8)), 8, 16, 4).train()
    view1, view2 = torch.randn(6, 3, 4, 4), torch.randn(6, 3, 4, 4)  # unrelated views: the two pairings differ
    both = torch.cat([view1, view2])  # as forward batches them (BatchNorm statistics over both views)
    with torch.no_grad():
        p1, p2 = model.predictor(model.online_projector(model.online_encoder(both))).chunk(2)
        z1, z2 = model.target_projector(model.target_encoder(both)).chunk(2)

    def loss(p, z):
        return 2 - 2 * F.cosine_similarity(p, z, dim=-1)

    crossed = (loss(p1, z2) + loss(p2, z1)).mean()
    own = (loss(p1, z1) + loss(p2, z2)).mean()
    assert abs(float(crossed - own)) > 0.1  # the test can tell the pairings apart
    torch.testing.assert_close(model(view1, view2).detach(), crossed)


@pytest.fixture(scope="module")
def trained():
    """(frames, encoder, losses) of a short seeded run on 4 episodes of unlike images."""
    frames = make_episodes(n_episodes=4, length=4)[0]
    return frames, *train_byol(frames, tiny_byol_config(epochs=12), progress=False)


def test_loss_decreases_on_a_tiny_set(trained):
    _, encoder, losses = trained
    assert runs_channels_last(encoder.trunk)
    assert len(losses) == 12 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.85 * np.mean(losses[:3]), losses  # seeded: 4.27 -> 3.27


def test_embeddings_do_not_collapse(trained):
    frames, encoder, _ = trained
    e = encoder.embed(frames).astype(np.float64)  # (N, D), eval mode, as VINN uses them
    spread = e.var(0).sum() / (e**2).sum(1).mean()  # 0 when every image has the same embedding, scale-free
    # Measured: 0.40 after this run, 0.034 for the untrained encoder, 0.11 when update_target copied BatchNorm
    # statistics target -> online (the online encoder's eval path stuck at stale statistics). Half the measured
    # value leaves room for other BLAS builds. 24 Adam steps (each moves a weight by about lr = 3e-4 at most) cannot
    # collapse the ResNet by gradient alone (without stop-gradient or predictor the projection loss falls to ~0 here,
    # yet the encoder keeps 0.3-0.6): this guards the embedding VINN reads (eval mode, running statistics).
    assert spread > 0.2, spread


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
    assert not any(is_flip(t) for t in all_transforms(aug))
    one = torch.from_numpy(make_episodes(1, 1)[0]).permute(0, 3, 1, 2)  # (1, 3, 32, 32) uint8
    views = augment_batch(one.repeat(6, 1, 1, 1), aug)  # the same image six times
    assert views.shape == (6, 3, 32, 32) and 0 <= views.min() and views.max() <= 1
    assert len({v.numpy().tobytes() for v in views}) == 6


def all_transforms(transform):
    """`transform` and every transform nested in it (Compose, RandomApply, RandomChoice, RandomOrder...), recursively."""
    yield transform
    for inner in getattr(transform, "transforms", []):
        yield from all_transforms(inner)


def is_flip(transform) -> bool:
    return isinstance(transform, (T.RandomHorizontalFlip, torchvision.transforms.RandomHorizontalFlip))


def test_the_flip_check_looks_inside_nested_transforms():
    nested = T.Compose([T.RandomGrayscale(), T.RandomApply([T.RandomChoice([T.ColorJitter(), T.RandomHorizontalFlip()])])])
    assert any(is_flip(t) for t in all_transforms(nested))


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


def test_resume_with_another_checkpoint_every(tmp_path):
    frames = make_episodes(n_episodes=2, length=4)[0]
    _, first = train_byol(frames, tiny_byol_config(epochs=1), checkpoint_dir=tmp_path, progress=False)
    # checkpoint_every says when to save, not what is trained: resuming under another value is allowed.
    _, losses = train_byol(frames, tiny_byol_config(epochs=2, checkpoint_every=2), checkpoint_dir=tmp_path, progress=False)
    assert len(losses) == 2 and losses[0] == first[0]


def test_resume_of_a_checkpoint_by_other_training_code_is_refused(tmp_path, monkeypatch):
    frames = make_episodes(n_episodes=2, length=4)[0]
    train_byol(frames, tiny_byol_config(epochs=1), checkpoint_dir=tmp_path, progress=False)
    monkeypatch.setattr(byol, "BYOL_VERSION", byol.BYOL_VERSION + 1)
    with pytest.raises(ValueError, match="other settings.*version"):
        train_byol(frames, tiny_byol_config(epochs=2), checkpoint_dir=tmp_path, progress=False)


def test_checkpoint_past_the_requested_epochs_is_refused(tmp_path):
    frames = make_episodes(n_episodes=2, length=4)[0]
    train_byol(frames, tiny_byol_config(epochs=3), checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"at epoch 3, more than the 2 epochs asked for; ask for epochs >= 3"):
        train_byol(frames, tiny_byol_config(epochs=2), checkpoint_dir=tmp_path, progress=False)


@pytest.mark.parametrize("overrides, match", [({"batch_size": 1}, "batch_size"), ({"tau": 1.0}, "tau"), ({"epochs": 0}, "epochs")])
def test_bad_config(overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny_byol_config(**overrides)


def test_paper_preset():
    paper = BYOLConfig.paper()
    assert (paper.encoder.arch, paper.encoder.image_size, paper.epochs, paper.batch_size, paper.lr, paper.tau) == (
        "resnet50", 224, 100, 168, 3e-4, 0.99)
