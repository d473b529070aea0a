"""Multi-block keys (vinn_policy.keys): several camera views and proprioception in one VINN search key."""

import numpy as np
import pytest
import torch

from vinn_policy import Encoder, VINNConfig, VINNPolicy
from vinn_policy.artefact import ArtefactError, _meta_sha256
from vinn_policy.keys import KeyLayout, typical_distance

from .conftest import make_episodes


def two_views(n_episodes: int = 4, length: int = 6):
    """A wrist view that episodes 0 and 1 share frame for frame (their actions differ), and a third-person view
    that tells every frame apart. Returns (views dict, actions, episode ids)."""
    frames, actions, eps = make_episodes(n_episodes, length)
    wrist = frames.copy()
    wrist[eps == 1] = frames[eps == 0]  # the wrist cannot tell episode 0 from episode 1
    actions[eps == 1, :3] = -actions[eps == 0, :3] - 0.5
    agent = make_episodes(n_episodes, length, seed=1)[0]
    return {"image": wrist, "agentview_image": agent}, actions, eps


def test_each_view_is_scaled_to_the_first_views_typical_neighbour_distance():
    rng = np.random.default_rng(0)
    eps = np.repeat(np.arange(5), 20)
    small, large = rng.normal(size=(100, 8)), 1000 * rng.normal(size=(100, 16))
    layout = KeyLayout.fit([small, large], eps, ("image", "agentview_image"))
    keys = layout.key([small, large])
    unit = typical_distance(small, eps)
    assert typical_distance(keys[:, :8], eps) == pytest.approx(unit)
    assert typical_distance(keys[:, 8:], eps) == pytest.approx(unit, rel=1e-5)  # unscaled it would be ~1000x larger


def test_a_second_view_tells_apart_what_the_wrist_view_cannot(tiny_encoder):
    views, actions, eps = two_views()
    torch.manual_seed(1)
    agent_encoder = Encoder(tiny_encoder.config)
    policy = VINNPolicy.fit(views, actions, eps, encoder=(tiny_encoder, agent_encoder), k=1, gripper_index=3)
    single = VINNPolicy.fit(views["image"], actions, eps, encoder=tiny_encoder, k=1, gripper_index=3)
    rows = np.flatnonzero(eps == 1)
    obs = {key: images[rows] for key, images in views.items()}
    np.testing.assert_allclose(policy.act_batch(obs), actions[rows])
    assert not np.allclose(single.act_batch(obs["image"]), actions[rows])  # the wrist's tie goes to episode 0
    assert policy.act({key: images[rows[2]] for key, images in views.items()}) == pytest.approx(actions[rows[2]])


@pytest.mark.parametrize("shared", [True, False])
def test_a_multi_view_policy_round_trips_with_one_or_two_encoders(tmp_path, tiny_encoder, shared):
    views, actions, eps = two_views()
    torch.manual_seed(1)
    encoders = tiny_encoder if shared else (tiny_encoder, Encoder(tiny_encoder.config))
    policy = VINNPolicy.fit(views, actions, eps, encoder=encoders, k=2, gripper_index=3)
    policy.save(tmp_path / "p")
    loaded = VINNPolicy.load(tmp_path / "p")
    obs = {key: images[::5] for key, images in views.items()}
    np.testing.assert_allclose(loaded.act_batch(obs), policy.act_batch(obs), rtol=1e-6)
    assert loaded.layout == policy.layout
    assert (loaded.encoders[0] is loaded.encoders[1]) == shared
    from safetensors import safe_open
    with safe_open(tmp_path / "p" / "model.safetensors", "pt") as f:
        assert any(k.startswith("encoder_1.") for k in f.keys()) == (not shared)  # a shared encoder is stored once


def test_proprioception_joins_the_key_with_its_weight(tiny_encoder):
    frames, actions, eps = make_episodes()
    proprio = np.stack([np.arange(len(frames)), np.zeros(len(frames))], 1).astype(np.float32)  # a dead second dim
    image_only = VINNPolicy.fit(frames, actions, eps, encoder=tiny_encoder, k=1, gripper_index=3)
    heavy = VINNPolicy.fit(frames, actions, eps, encoder=tiny_encoder, k=1, gripper_index=3, proprio=proprio,
                           proprio_keys=("robot0_eef_pos", "robot0_gripper_qpos"), proprio_weight=100.0)
    assert image_only.layout is None and heavy.layout.proprio_keys == ("robot0_eef_pos", "robot0_gripper_qpos")
    assert heavy.layout.proprio_scale[1] == 0  # a dimension that never moves carries nothing
    obs = {"image": frames[3], "robot0_eef_pos": proprio[20, :1], "robot0_gripper_qpos": proprio[20, 1:]}
    assert image_only.act(obs) == pytest.approx(actions[3])
    assert heavy.act(obs) == pytest.approx(actions[20])  # the image says frame 3, proprioception (weighted 100x) frame 20
    with pytest.raises(ValueError, match="robot0_gripper_qpos"):
        heavy.act({"image": frames[3], "robot0_eef_pos": proprio[20, :1]})


def test_a_multi_view_policy_names_what_an_observation_lacks(tiny_encoder):
    views, actions, eps = two_views()
    policy = VINNPolicy.fit(views, actions, eps, encoder=tiny_encoder, k=1, gripper_index=3)
    with pytest.raises(ValueError, match="needs a dict observation"):
        policy.act(views["image"][0])
    with pytest.raises(ValueError, match="agentview_image"):
        policy.act({"image": views["image"][0]})
    with pytest.raises(ValueError, match="one per view"):
        VINNPolicy.fit(views, actions, eps, encoder=[tiny_encoder] * 3, k=1)
    with pytest.raises(ValueError, match="proprio="):
        VINNPolicy.fit(views, actions, eps, encoder=tiny_encoder, proprio_weight=1.0)


def test_multi_view_keys_work_with_chunks_and_added_demos(tiny_encoder):
    views, actions, eps = two_views()
    first = eps < 3
    policy = VINNPolicy.fit({k: v[first] for k, v in views.items()}, actions[first], eps[first], encoder=tiny_encoder,
                            k=1, gripper_index=3, chunk=3)
    policy.add_demos({k: v[~first] for k, v in views.items()}, actions[~first], eps[~first])
    assert len(policy.database) == len(actions)
    row = np.flatnonzero(eps == 3)[1]
    done = [policy.act({k: v[row] for k, v in views.items()}) for _ in range(3)]
    np.testing.assert_allclose(np.stack(done), actions[row:row + 3])  # the added demo's next 3 actions


def test_a_corrupt_key_layout_is_an_artefact_error(tmp_path, tiny_encoder):
    import json
    views, actions, eps = two_views()
    VINNPolicy.fit(views, actions, eps, encoder=tiny_encoder, k=1, gripper_index=3).save(tmp_path / "p")
    config = tmp_path / "p" / "config.json"
    meta = json.loads(config.read_text())
    meta["key_layout"]["view_scales"] = [1.0]  # one scale for two views
    config.write_text(json.dumps({**meta, "meta_sha256": _meta_sha256(meta)}))  # a consistent file with a wrong layout
    with pytest.raises(ArtefactError, match="key layout"):
        VINNPolicy.load(tmp_path / "p")


def test_single_view_policies_are_unchanged(tiny_encoder, episodes):
    frames, actions, eps = episodes
    policy = VINNPolicy.fit(frames, actions, eps, encoder=tiny_encoder, k=2, gripper_index=3)
    assert policy.layout is None and policy.config == VINNConfig(k=2, gripper_index=3)
    np.testing.assert_array_equal(policy.database.embeddings.numpy(), tiny_encoder.embed(frames))
