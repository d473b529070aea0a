"""Shared fixtures: tiny synthetic image/action datasets (no simulator)."""

import numpy as np
import pytest
import torch

from vinn_policy import Encoder, EncoderConfig

torch.set_num_threads(2)


@pytest.fixture
def tiny_config() -> EncoderConfig:
    """The smallest ResNet input (32 px) keeps unit tests to seconds."""
    return EncoderConfig(arch="resnet18", image_size=32)


@pytest.fixture
def tiny_encoder(tiny_config: EncoderConfig) -> Encoder:
    torch.manual_seed(0)
    return Encoder(tiny_config)


def make_episodes(n_episodes: int = 4, length: int = 6, size: int = 32, seed: int = 0):
    """Frames whose colour drifts along each episode; actions depend on the frame index.

    Returns (frames (N, size, size, 3) uint8, actions (N, 4) float32, episode_ids (N,)), gripper in dim 3.
    """
    rng = np.random.default_rng(seed)
    frames, actions, eps = [], [], []
    for e in range(n_episodes):
        base = rng.integers(0, 255, size=(size, size, 3))
        for t in range(length):
            frames.append(np.clip(base + 20 * t, 0, 255).astype(np.uint8))
            actions.append([t / length, -t / length, 0.1 * e, 1.0 if t >= length // 2 else -1.0])
            eps.append(e)
    return np.stack(frames), np.asarray(actions, np.float32), np.asarray(eps)


@pytest.fixture
def episodes():
    return make_episodes()


def runs_channels_last(trunk: torch.nn.Module) -> bool:
    convs = [p for p in trunk.parameters() if p.dim() == 4]
    return bool(convs) and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
