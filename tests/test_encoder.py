"""Encoder: preprocessing, batched eval-mode embedding, ImageNet weights from a local file, save/load."""

import copy

import numpy as np
import pytest
import torch

from vinn_policy.artefact import ArtefactError
from vinn_policy.encoder import Encoder, EncoderConfig, check_images, preprocess

from .conftest import runs_channels_last


def test_preprocess_shape_range_and_normalisation(tiny_config):
    img = np.full((2, 50, 40, 3), 255, np.uint8)
    x = preprocess(img, tiny_config)
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    expected = (1 - np.array(tiny_config.mean)) / np.array(tiny_config.std)
    np.testing.assert_allclose(x[0, :, 5, 5].numpy(), expected, rtol=1e-5)


def test_embedding_is_batch_independent_and_in_eval_mode(tiny_encoder, episodes):
    frames = episodes[0]
    tiny_encoder.trunk.train()
    all_at_once = tiny_encoder.embed(frames, batch_size=64)
    one_by_one = np.concatenate([tiny_encoder.embed(f) for f in frames])
    assert all_at_once.shape == (len(frames), 512) and all_at_once.dtype == np.float32
    np.testing.assert_allclose(all_at_once, one_by_one, rtol=1e-4, atol=1e-5)
    assert tiny_encoder.trunk.training  # the caller's mode is restored


@pytest.mark.parametrize(
    "images, match",
    [
        (np.zeros((8, 8, 3), np.float32), "uint8"),
        (np.zeros((8, 8), np.uint8), r"\(H, W, 3\)"),
        (np.zeros((8, 8, 4), np.uint8), "3 channels"),
        (np.zeros((2, 3, 8, 8), np.uint8), "channels last"),
        (np.zeros((0, 8, 8, 3), np.uint8), "non-empty"),
        ([[1, 2, 3]], "numpy uint8 array"),
    ],
)
def test_bad_images(images, match):
    with pytest.raises(ValueError, match=match):
        check_images(images)


def test_config_validation():
    with pytest.raises(ValueError, match="available"):
        EncoderConfig(arch="vgg")
    with pytest.raises(ValueError, match="image_size"):
        EncoderConfig(image_size=16)
    assert EncoderConfig.paper().feature_dim == 2048


def test_imagenet_weights_missing_file_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads.*resnet18-f37072fd.pth"):
        Encoder.imagenet(tmp_path / "nope.pth")


def test_imagenet_weights_load_from_local_file(tmp_path, tiny_config):
    # A torchvision-format state dict (with the fc layer) stands in for the official file.
    reference = Encoder(tiny_config)
    state = {**reference.trunk.state_dict(), "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    torch.save(state, tmp_path / "resnet18.pth")
    loaded = Encoder.imagenet(tmp_path / "resnet18.pth", tiny_config)
    assert loaded.origin == "imagenet"
    img = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(loaded.embed(img), reference.embed(img))
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="does not hold resnet18"):
        Encoder.imagenet(tmp_path / "other.pth", tiny_config)


def test_trunk_runs_channels_last_with_the_same_embeddings(tmp_path, tiny_config, episodes):
    encoder = Encoder(tiny_config)
    assert runs_channels_last(encoder.trunk)
    encoder.save(tmp_path / "enc")
    assert runs_channels_last(Encoder.load(tmp_path / "enc").trunk)
    frames = episodes[0][:4]
    reference = copy.deepcopy(encoder.trunk).to(memory_format=torch.contiguous_format).eval()
    with torch.inference_mode():
        expected = reference(preprocess(frames, tiny_config).contiguous()).numpy()
    np.testing.assert_allclose(encoder.embed(frames), expected, rtol=1e-4, atol=1e-5)


def test_save_load_round_trip(tmp_path, tiny_encoder, episodes):
    tiny_encoder.save(tmp_path / "enc")
    loaded = Encoder.load(tmp_path / "enc")
    assert loaded.config == tiny_encoder.config
    np.testing.assert_array_equal(loaded.embed(episodes[0][:3]), tiny_encoder.embed(episodes[0][:3]))
    with pytest.raises(ArtefactError, match="'encoder' artefact; expected a 'vinn_policy'"):
        from vinn_policy import VINNPolicy

        VINNPolicy.load(tmp_path / "enc")
