"""Offline evaluation: the metric on a hand-computed case, the k curve, the split and the full table."""

import numpy as np
import pytest

from vinn_policy import Encoder, EncoderConfig
from vinn_policy.baselines.bc import BCConfig
from vinn_policy.harness.offline import (
    OfflineConfig,
    evaluate_offline,
    gripper_accuracy,
    knn_curve,
    three_way_split,
    translation_mse,
)

from .conftest import make_episodes


def test_translation_mse_by_hand():
    pred = np.array([[0.1, 0.2, 0.3, 1.0], [0.0, 0.0, 0.0, -1.0]])
    target = np.array([[0.0, 0.2, 0.5, -1.0], [0.3, 0.0, 0.0, -1.0]])
    # squared errors on the 3 translation dims: (0.01, 0, 0.04) and (0.09, 0, 0); mean of 6 = 0.14 / 6
    assert translation_mse(pred, target) == pytest.approx(0.14 / 6)
    assert gripper_accuracy(pred, target, 3) == 0.5


def test_split_is_by_episode_and_disjoint():
    eps = np.repeat(np.arange(20), 7)
    split = three_way_split(eps, OfflineConfig(test_fraction=0.2, val_fraction=0.25))
    sets = [set(eps[r]) for r in (split.train, split.val, split.test)]
    assert [len(s) for s in sets] == [12, 4, 4]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert len(split.train) + len(split.val) + len(split.test) == len(eps)


def test_knn_curve_k1_is_the_nearest_neighbours_error():
    emb = np.array([[0.0], [1.0], [10.0], [0.1], [9.0]], np.float32)
    actions = np.array([[0, 0, 0, 1], [1, 1, 1, 1], [5, 5, 5, -1], [0, 0, 0, 1], [5, 5, 5, -1]], np.float32)
    curve = knn_curve(emb, actions, np.array([0, 0, 0, 1, 1]), np.array([0, 1, 2]), np.array([3, 4]), OfflineConfig(k_max=3))
    assert curve["k"] == [1, 2, 3] and curve["mse"][0] == 0.0 and curve["gripper_accuracy"][0] == 1.0
    assert curve["mse"][2] > 0


def test_full_table_on_a_tiny_task(tiny_encoder):
    frames, actions, eps = make_episodes(n_episodes=10, length=6)
    config = OfflineConfig(k_max=10, bc=BCConfig(encoder=EncoderConfig(image_size=32), hidden=(16,), epochs=2, batch_size=8))
    result = evaluate_offline(frames, actions, eps, {"byol": tiny_encoder, "random": Encoder(EncoderConfig(image_size=32))},
                              config, progress=False)
    assert set(result["methods"]) == {"vinn", "vinn_random", "bc", "bc_rep", "open_loop", "random"}
    for name, row in result["methods"].items():
        assert np.isfinite(row["mse"]) and 0 <= row["gripper_accuracy"] <= 1, name
    val_curve = result["k_curves"]["byol"]["val"]["mse"]
    assert result["methods"]["vinn"]["k"] == int(np.argmin(val_curve)) + 1
    assert result["methods"]["random"]["mse"] > result["methods"]["vinn"]["mse"]
    assert sum(result["split"]["episodes"].values()) == 10
