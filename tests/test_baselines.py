"""Baselines: BC end-to-end and BC-rep learn, open-loop replays exactly, random is uniform; all save/load. The state oracle."""

import numpy as np
import pytest

from vinn_policy import ArtefactError, Encoder, EncoderConfig
from vinn_policy.baselines import OpenLoopPolicy, RandomPolicy, StateKNNPolicy, load_policy, state_features
from vinn_policy.baselines.bc import BCConfig, BCPolicy

from .conftest import make_episodes, runs_channels_last

TINY = dict(encoder=EncoderConfig(image_size=32), hidden=(32,), batch_size=8, gripper_index=3, patience=0)


@pytest.fixture(scope="module")
def data():
    return make_episodes(n_episodes=5, length=8)


def test_bc_end_to_end_loss_falls_and_round_trips(tmp_path, data):
    frames, actions, eps = data
    policy = BCPolicy.fit_end_to_end(frames, actions, eps, BCConfig(**TINY, epochs=6, lr=3e-4, augment=False), progress=False)
    losses = policy.report.train_loss
    assert losses[-1] < 0.5 * losses[0], losses
    a = policy.act({"image": frames[0]})
    assert a.shape == (4,) and a.dtype == np.float32 and a[3] in (-1.0, 1.0)
    policy.save(tmp_path / "bc")
    loaded = load_policy(tmp_path / "bc")
    assert isinstance(loaded, BCPolicy) and not loaded.frozen
    assert runs_channels_last(policy.encoder.trunk)  # as trained, and as loaded (Encoder)
    np.testing.assert_array_equal(loaded.act_batch(frames), policy.act_batch(frames))


def test_bc_rep_trains_only_the_head(tmp_path, data, tiny_encoder):
    frames, actions, eps = data
    before = {k: v.clone() for k, v in tiny_encoder.trunk.state_dict().items()}
    policy = BCPolicy.fit_on_features(frames, actions, eps, tiny_encoder, BCConfig(**TINY, epochs=30, lr=3e-3), progress=False)
    assert policy.frozen and policy.report.train_loss[-1] < 0.5 * policy.report.train_loss[0]
    for k, v in tiny_encoder.trunk.state_dict().items():
        assert (v == before[k]).all(), k
    policy.save(tmp_path / "rep")
    np.testing.assert_array_equal(load_policy(tmp_path / "rep").act_batch(frames), policy.act_batch(frames))


def test_bc_early_stopping_keeps_the_best_validation_epoch(data, tiny_encoder):
    frames, actions, eps = data
    cfg = BCConfig(**{**TINY, "patience": 2}, epochs=40, lr=3e-2)
    report = BCPolicy.fit_on_features(frames, actions, eps, tiny_encoder, cfg, val_episodes=[4], progress=False).report
    assert report.best_epoch == int(np.argmin(report.val_loss)) + 1
    assert report.stopped_early == (len(report.val_loss) < 40)


def test_open_loop_replays_the_chosen_demo_exactly(tmp_path, data):
    frames, actions, eps = data
    policy = OpenLoopPolicy.fit(frames, actions, eps)
    for episode in (0, 3):
        rows = np.flatnonzero(eps == episode)
        policy.reset()
        start = frames[rows[0]]
        replay = np.stack([policy.act(start) for _ in range(len(rows) + 3)])
        np.testing.assert_array_equal(replay[: len(rows)], actions[rows])
        np.testing.assert_array_equal(replay[len(rows) :], np.repeat(actions[rows[-1 :]], 3, 0))  # holds the last
    policy.save(tmp_path / "ol")
    loaded = load_policy(tmp_path / "ol")
    assert loaded.choose(frames[np.flatnonzero(eps == 2)[0]]) == 2


def test_random_policy(tmp_path):
    policy = RandomPolicy(action_dim=4, seed=3)
    actions = np.stack([policy.act(None) for _ in range(2000)])
    assert actions.dtype == np.float32 and actions.shape == (2000, 4)
    assert actions.min() >= -1 and actions.max() <= 1 and abs(actions.mean()) < 0.05
    policy.save(tmp_path / "rand")
    again = load_policy(tmp_path / "rand")
    np.testing.assert_array_equal(again.act(None), RandomPolicy(action_dim=4, seed=3).act(None))


def test_load_policy_refuses_non_policies(tmp_path, tiny_encoder):
    tiny_encoder.save(tmp_path / "enc")
    with pytest.raises(ArtefactError, match="'encoder' artefact; policies are"):
        load_policy(tmp_path / "enc")


def test_bc_bad_input(data):
    frames, actions, eps = data
    with pytest.raises(ValueError, match="actions"):
        BCPolicy.fit_on_features(frames, actions[:-1], eps, Encoder(EncoderConfig(image_size=32)), BCConfig(**TINY))
    with pytest.raises(ValueError, match="Invalid BCConfig"):
        BCConfig(lr=0)


def test_state_oracle_features_are_offsets_from_the_gripper_and_it_acts_as_its_nearest_state():
    rng = np.random.default_rng(0)
    obs = {key: rng.normal(size=(20, 3)) for key in ("robot0_eef_pos", "cubeA_pos", "cubeB_pos")}
    obs["robot0_gripper_qpos"] = rng.normal(size=(20, 2))
    features = state_features(obs, ("cubeA_pos", "cubeB_pos"))
    assert features.shape == (20, 8)
    assert np.allclose(features[3], 100 * np.r_[obs["cubeA_pos"][3] - obs["robot0_eef_pos"][3],
                                                obs["cubeB_pos"][3] - obs["robot0_eef_pos"][3], obs["robot0_gripper_qpos"][3]], atol=1e-3)
    actions = np.c_[rng.uniform(-1, 1, (20, 3)), np.where(rng.random(20) > 0.5, 1.0, -1.0)].astype(np.float32)
    oracle = StateKNNPolicy(features, actions, np.arange(20) // 5, k=1, objects=("cubeA_pos", "cubeB_pos"), gripper_index=3)
    oracle.reset(seed=1)
    # Moving the gripper and both cubes together leaves every offset, so the nearest state, unchanged.
    moved = {key: v[3] + (0.0 if key == "robot0_gripper_qpos" else 0.3) for key, v in obs.items()}
    assert np.allclose(oracle.act(moved), actions[3])
    assert oracle.uses_images is False  # rollouts need not render the camera for it
    with pytest.raises(ValueError, match=r"privileged observation keys \['cubeB_pos'\]"):
        oracle.act({key: v[3] for key, v in obs.items() if key != "cubeB_pos"})


def test_state_oracle_features_carry_object_joint_angles_at_their_scale():
    from vinn_policy.baselines.state_oracle import JOINT_SCALE

    obs = {"robot0_eef_pos": np.zeros(3), "handle_pos": np.ones(3), "robot0_gripper_qpos": np.zeros(2),
           "handle_qpos": np.array([1.4]), "hinge_qpos": np.array([0.2])}
    features = state_features(obs, ("handle_pos",), ("handle_qpos", "hinge_qpos"))
    np.testing.assert_allclose(features, [100, 100, 100, 0, 0, 1.4 / JOINT_SCALE, 0.2 / JOINT_SCALE], rtol=1e-6)
    oracle = StateKNNPolicy(features[None], np.zeros((1, 4), np.float32), np.zeros(1), 1, ("handle_pos",), 3,
                            ("handle_qpos", "hinge_qpos"))
    np.testing.assert_allclose(oracle.act(obs), np.zeros(4))
    with pytest.raises(ValueError, match=r"privileged observation keys \['handle_qpos'\]"):
        oracle.act({k: v for k, v in obs.items() if k != "handle_qpos"})
