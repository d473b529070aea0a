"""VINNPolicy: fit, act on images and dict observations, save/load, bad input and corrupted artefacts."""

import json
import os
import stat
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vinn_policy import ArtefactError, VINNPolicy
from vinn_policy.artefact import META_FILE, WEIGHTS_FILE, atomic_write_text


@pytest.fixture
def policy(episodes, tiny_encoder):
    frames, actions, eps = episodes
    return VINNPolicy.fit(frames, actions, eps, encoder=tiny_encoder, k=3, gripper_index=3)


def test_act_on_a_training_frame_returns_its_episode_action(policy, episodes, tiny_encoder):
    frames, actions, eps = episodes
    policy.reset()
    a = policy.act(frames[7])
    assert a.shape == (4,) and a.dtype == np.float32
    nb = policy.last_neighbours
    assert nb.indices[0, 0] == 7 and nb.distances[0, 0] < 1e-2
    # k = 3: the softmin-weighted mean of the three neighbours' translations, the gripper by their weighted vote
    np.testing.assert_allclose(a[:3], (nb.weights[0, :, None] * actions[nb.indices[0], :3]).sum(0), rtol=1e-5)
    closed = nb.weights[0][actions[nb.indices[0], 3] > 0].sum() >= 0.5
    assert a[3] == (1.0 if closed else -1.0)
    # k = 1: exactly the action demonstration 1 took at that frame
    nearest = VINNPolicy.fit(frames, actions, eps, encoder=tiny_encoder, k=1, gripper_index=3)
    np.testing.assert_array_equal(nearest.act(frames[7]), actions[7])


def test_act_returns_a_copy_the_policy_does_not_keep(tiny_encoder):
    policy, scene, other = two_strategy_policy(tiny_encoder, "consistent")
    policy.reset()
    policy.act(other)  # previous action: -y
    a = policy.act(other)
    kept = policy.last_neighbours.actions.copy()
    a[:] = [0, 1, 0, -1]  # the caller changes its action (e.g. clips or flips it in place)...
    np.testing.assert_array_equal(policy.last_neighbours.actions, kept)
    assert policy.act(scene)[1] == pytest.approx(-1.0, abs=1e-5)  # ...and mode selection still follows the real -y


def test_cheap_checks_run_before_any_frame_is_embedded(episodes, tiny_encoder, monkeypatch):
    frames, actions, eps = episodes
    monkeypatch.setattr(tiny_encoder, "embed", lambda *a, **k: pytest.fail("embedded before validating"))
    bad = actions.copy()
    bad[-1, 0] = np.nan
    with pytest.raises(ValueError, match="actions contains NaN"):
        VINNPolicy.fit(frames, bad, eps, encoder=tiny_encoder)
    with pytest.raises(ValueError, match="episode_ids must be integer-valued"):
        VINNPolicy.fit(frames, actions, eps + 0.5, encoder=tiny_encoder)
    with pytest.raises(ValueError, match="same length"):
        VINNPolicy.fit(frames, actions, eps[:-1], encoder=tiny_encoder)
    with pytest.raises(ValueError, match="gripper_index 4 is outside"):
        VINNPolicy.fit(frames, actions, eps, encoder=tiny_encoder, gripper_index=4)


def test_fit_and_fit_file_share_one_configuration_surface(tmp_path, episodes, tiny_encoder):
    import inspect

    from vinn_policy.demos.dataset import write_demos

    from tests.test_demos import ENV_ARGS, fake_episode

    config = {"k", "temperature", "gripper_index", "mode_selection", "image_key", "index", "storage", "batch_size"}
    assert config <= set(inspect.signature(VINNPolicy.fit).parameters)
    assert config <= set(inspect.signature(VINNPolicy.fit_file).parameters)
    path = tmp_path / "door.hdf5"
    write_demos(path, [fake_episode(s) for s in range(2)], ENV_ARGS)
    # image_key is the observation key act() reads in both; the file's camera dataset is demo_image_key
    policy = VINNPolicy.fit_file(path, tiny_encoder, k=2, image_key="rgb", demo_image_key="sideview_image")
    assert policy.config.image_key == "rgb" and policy.config.k == 2
    assert policy.act({"rgb": np.zeros((32, 32, 3), np.uint8)}).shape == (4,)
    with pytest.raises(Exception, match="no 'agentview_image'"):
        VINNPolicy.fit_file(path, tiny_encoder, demo_image_key="agentview_image")


def test_dict_observation_and_batch(policy, episodes):
    frames = episodes[0]
    single = policy.act({"image": frames[3], "robot0_eef_pos": np.zeros(3)})
    batch = policy.act_batch({"image": frames[:5]})
    assert batch.shape == (5, 4) and batch.dtype == np.float32
    np.testing.assert_allclose(batch[3], single, atol=1e-4)  # batched conv sums round differently
    with pytest.raises(ValueError, match="no image key 'image'.*Set image_key"):
        policy.act({"agentview_image": frames[0]})
    with pytest.raises(ValueError, match="act_batch"):
        policy.act(frames[:2])


def test_save_load_gives_identical_actions(tmp_path, policy, episodes):
    frames = episodes[0]
    policy.save(tmp_path / "vinn")
    loaded = VINNPolicy.load(tmp_path / "vinn")
    np.testing.assert_array_equal(loaded.act_batch(frames), policy.act_batch(frames))
    assert loaded.config == policy.config and loaded.encoder.config == policy.encoder.config
    meta = json.loads((tmp_path / "vinn" / META_FILE).read_text())
    for key in ("encoder", "policy", "action_dim", "format_version"):
        assert key in meta
    assert meta["encoder"]["image_size"] == 32 and meta["policy"]["k"] == 3


def test_corrupted_truncated_and_foreign_artefacts_are_refused(tmp_path, policy):
    path = policy.save(tmp_path / "vinn")
    weights, meta_file = path / WEIGHTS_FILE, path / META_FILE
    original = weights.read_bytes()

    weights.write_bytes(original[: len(original) // 2])
    with pytest.raises(ArtefactError, match="truncated or corrupted"):
        VINNPolicy.load(path)
    weights.write_bytes(original[:-8] + b"\x00" * 8)
    with pytest.raises(ArtefactError, match="truncated or corrupted"):
        VINNPolicy.load(path)
    weights.write_bytes(original)

    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ArtefactError, match="format version 99.*reads format versions"):
        VINNPolicy.load(path)
    meta_file.write_text("{not json")
    with pytest.raises(ArtefactError, match="not valid JSON"):
        VINNPolicy.load(path)
    meta_file.unlink()
    with pytest.raises(ArtefactError, match="config.json is missing"):
        VINNPolicy.load(path)
    with pytest.raises(ArtefactError, match="not a saved"):
        VINNPolicy.load(tmp_path / "nothing")


def test_saved_artefacts_and_reports_get_the_usual_permissions_not_owner_only(tmp_path, policy):
    umask = os.umask(0o022)  # atomic writes go through mkstemp / mkdtemp, which make owner-only files
    try:
        saved = policy.save(tmp_path / "vinn")
        atomic_write_text(tmp_path / "report.md", "# report")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o755
    assert {stat.S_IMODE(f.stat().st_mode) for f in saved.iterdir()} == {0o644}
    assert stat.S_IMODE((tmp_path / "report.md").stat().st_mode) == 0o644


def test_interrupted_save_keeps_the_previous_artefact(tmp_path, policy, episodes, monkeypatch):
    frames = episodes[0]
    path = policy.save(tmp_path / "vinn")
    before = policy.act_batch(frames)

    import vinn_policy.artefact as artefact

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("power cut mid-write")

    monkeypatch.setattr(artefact, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        policy.save(path)
    monkeypatch.undo()
    np.testing.assert_array_equal(VINNPolicy.load(path).act_batch(frames), before)
    assert [p.name for p in tmp_path.iterdir()] == ["vinn"]  # no staging debris


def test_a_save_over_an_artefact_swaps_it_atomically_or_says_where_the_old_one_is(tmp_path, policy, episodes, monkeypatch):
    import vinn_policy.artefact as artefact

    frames = episodes[0]
    path = policy.save(tmp_path / "vinn")
    before = policy.act_batch(frames)
    swaps = []
    exchange = artefact._exchange
    monkeypatch.setattr(artefact, "_exchange", lambda a, b: swaps.append(exchange(a, b)) or swaps[-1])
    policy.save(path)
    assert swaps == [True]  # renameat2 on this filesystem: no moment without an artefact at `path`
    assert [p.name for p in tmp_path.iterdir()] == ["vinn"]

    # Without the exchange: a crash between the two renames leaves the previous artefact aside, and load says where.
    monkeypatch.setattr(artefact, "_exchange", lambda a, b: False)
    renames, replace = [], os.replace

    def crash_on_second(src, dst):
        renames.append(dst)
        if len(renames) == 2:
            raise KeyboardInterrupt("power cut between the renames")
        replace(src, dst)

    monkeypatch.setattr(artefact.os, "replace", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        policy.save(path)
    monkeypatch.undo()
    with pytest.raises(ArtefactError, match=r"interrupted; the previous artefact is .*\.vinn\.old-\d+: rename it"):
        VINNPolicy.load(path)
    os.replace(renames[0], path)
    np.testing.assert_array_equal(VINNPolicy.load(path).act_batch(frames), before)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"k": 0}, "k must be an integer >= 1"), ({"temperature": -1.0}, "temperature"), ({"temperature": float("nan")}, "temperature"),
     ({"mode_selection": "median"}, "mode_selection must be one of")],
)
def test_bad_policy_settings(episodes, tiny_encoder, kwargs, match):
    with pytest.raises(ValueError, match=match):
        VINNPolicy.fit(*episodes, encoder=tiny_encoder, **kwargs)


def test_numpy_k_and_a_negative_gripper_index_mean_what_they_say(tmp_path, policy, episodes, tiny_encoder):
    frames, actions, eps = episodes
    same = VINNPolicy.fit(frames, actions, eps, encoder=tiny_encoder, k=np.int64(3), temperature=np.float32(1.0), gripper_index=-1)
    assert same.config == policy.config and type(same.config.k) is int  # gripper_index -1 -> 3, the last dimension
    np.testing.assert_array_equal(same.act_batch(frames), policy.act_batch(frames))
    assert VINNPolicy.load(same.save(tmp_path / "vinn")).config == policy.config  # config.json holds plain numbers
    with pytest.raises(ValueError, match=r"config.gripper_index \(2\) must match the database's gripper_index \(3\)"):
        VINNPolicy(policy.encoder, policy.database, replace(policy.config, gripper_index=2))


def test_bad_training_data(episodes, tiny_encoder):
    frames, actions, eps = episodes
    with pytest.raises(ValueError, match="one action per frame"):
        VINNPolicy.fit(frames, actions[:-1], eps, encoder=tiny_encoder)
    bad = actions.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        VINNPolicy.fit(frames, bad, eps, encoder=tiny_encoder)
    with pytest.raises(ValueError, match="non-empty"):
        VINNPolicy.fit(frames[:0], actions[:0], eps[:0], encoder=tiny_encoder)


observations = st.one_of(
    hnp.arrays(dtype=np.uint8, shape=st.tuples(st.integers(1, 64), st.integers(1, 64), st.just(3))),  # valid, any size
    hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.float32, np.float64, np.int64, np.bool_]),
        shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=40),
    ),
    hnp.arrays(dtype=np.float32, shape=(20, 20, 3), elements=st.sampled_from([np.nan, np.inf, 0.5])),
    st.none(),
    st.integers(),
    st.text(max_size=3),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(obs=observations)
def test_act_fuzz_gives_clear_error_or_finite_action(policy, obs):
    try:
        a = policy.act(obs)
    except ValueError as e:
        assert "Expected" in str(e) or "expected" in str(e) or "act_batch" in str(e)
        return
    assert a.shape == (4,) and a.dtype == np.float32 and np.isfinite(a).all()


def test_neighbours_trace_each_action_to_demonstration_frames(policy, episodes):
    frames, actions, eps = episodes
    policy.act(frames[8])
    nb = policy.last_neighbours
    rows = nb.indices[0]
    assert nb.episode_ids[0].tolist() == eps[rows].tolist()
    assert nb.frame_indices[0].tolist() == (rows % 6).tolist()  # 6 frames per episode
    np.testing.assert_array_equal(nb.neighbour_actions[0], actions[rows])
    first = nb.rows()[0]
    assert first["episode"] == 1 and first["frame"] == 2 and first["weight"] == pytest.approx(float(nb.weights[0, 0]))
    json.dumps(nb.rows())  # provenance is plain JSON


def test_add_and_remove_demos_match_a_policy_fitted_from_scratch(episodes, tiny_encoder):
    frames, actions, eps = episodes
    first = eps < 2
    grown = VINNPolicy.fit(frames[first], actions[first], eps[first], encoder=tiny_encoder, k=3, gripper_index=3)
    grown.add_demos(frames[~first], actions[~first], eps[~first])
    full = VINNPolicy.fit(frames, actions, eps, encoder=tiny_encoder, k=3, gripper_index=3)
    np.testing.assert_array_equal(grown.act_batch(frames), full.act_batch(frames))
    np.testing.assert_array_equal(grown.database.frame_indices, full.database.frame_indices)

    full.remove_episodes([1, 3])
    keep = ~np.isin(eps, [1, 3])
    subset = VINNPolicy.fit(frames[keep], actions[keep], eps[keep], encoder=tiny_encoder, k=3, gripper_index=3)
    np.testing.assert_array_equal(full.act_batch(frames), subset.act_batch(frames))
    assert set(full.database.episode_ids.tolist()) == {0, 2}

    with pytest.raises(ValueError, match="already in the database"):
        full.add_demos(frames[:6], actions[:6], eps[:6])
    with pytest.raises(ValueError, match="not in the database"):
        full.remove_episodes([7])
    with pytest.raises(ValueError, match="empty the database"):
        full.remove_episodes([0, 2])


def test_uncertainty_is_low_in_distribution_and_high_far_from_the_demos(tmp_path, episodes, tiny_encoder):
    frames, actions, eps = episodes
    train = eps < 3
    policy = VINNPolicy.fit(frames[train], actions[train], eps[train], encoder=tiny_encoder, k=3, gripper_index=3)
    policy.act_batch(frames[~train])  # a held-out demonstration: like the leave-one-episode-out reference
    held_out = policy.uncertainty()
    noise = np.random.default_rng(1).integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)
    policy.act_batch(np.zeros_like(noise))  # a black frame: nothing like the demos
    far = policy.uncertainty()
    assert held_out.score.shape == (6,) and np.all(held_out.distance > 0)
    assert far.distance.min() > np.median(held_out.distance)
    assert set(policy.reference) == {"distance", "spread"}
    loaded = VINNPolicy.load(policy.save(tmp_path / "vinn"))
    assert loaded.reference == policy.reference  # saved with the policy
    with pytest.raises(ValueError, match="call act"):
        VINNPolicy.fit(frames, actions, eps, encoder=tiny_encoder).uncertainty()


@pytest.mark.parametrize("reference", [{"distance": 0.0, "spread": 1.0}, {"distance": 1.0}, {"distance": float("nan"), "spread": 1.0}, []])
def test_a_zero_or_missing_uncertainty_reference_is_refused_not_divided_by(tmp_path, policy, episodes, reference):
    policy.act(episodes[0][0])
    policy.reference = reference
    with pytest.raises(ValueError, match="uncertainty reference must be"):
        policy.uncertainty()
    from vinn_policy.artefact import load_artefact, save_artefact

    policy.reference = None
    tensors, meta = load_artefact(policy.save(tmp_path / "ok"), "vinn_policy")
    meta = {k: v for k, v in meta.items() if k not in ("kind", "format_version", "weights_sha256", "meta_sha256")}
    path = save_artefact(tmp_path / "bad", "vinn_policy", tensors, {**meta, "uncertainty_reference": reference})
    with pytest.raises(ArtefactError, match="uncertainty reference must be"):
        VINNPolicy.load(path)


def two_strategy_policy(tiny_encoder, mode_selection: str, tmp_path=None) -> tuple[VINNPolicy, np.ndarray, np.ndarray]:
    """One scene shown in 5 demos: 3 go +y, 2 go -y (two strategies); one other scene that only goes -y."""
    rng = np.random.default_rng(0)
    scene, other = rng.integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    frames = np.stack([scene] * 5 + [other])
    actions = np.array([[0, 1, 0, -1]] * 3 + [[0, -1, 0, -1]] * 3, np.float32)
    policy = VINNPolicy.fit(frames, actions, np.arange(6), encoder=tiny_encoder, k=5, temperature=1e-3, gripper_index=3,
                            mode_selection=mode_selection)
    if tmp_path is not None:
        policy = VINNPolicy.load(policy.save(tmp_path / mode_selection))
    return policy, scene, other


@pytest.mark.parametrize("mode_selection, first_dy, after_other_dy", [
    ("none", 0.2, 0.2),  # the paper's average: 3 x (+1) and 2 x (-1) -> +0.2, a motion no demo made
    ("dominant", 1.0, 1.0),  # the heavier group only
    ("consistent", 1.0, -1.0),  # the heavier group first, then the group agreeing with the previous action
])
def test_mode_selection_on_two_strategy_demos(tmp_path, tiny_encoder, mode_selection, first_dy, after_other_dy):
    policy, scene, other = two_strategy_policy(tiny_encoder, mode_selection, tmp_path)  # through save/load
    assert policy.config.mode_selection == mode_selection
    policy.reset()
    assert policy.act(scene)[1] == pytest.approx(first_dy, abs=1e-5)
    policy.reset()
    assert policy.act(other)[1] == pytest.approx(-1.0, abs=1e-5)  # unimodal (one near neighbour): untouched
    assert policy.act(scene)[1] == pytest.approx(after_other_dy, abs=1e-5)
    w = policy.last_neighbours.weights[0]
    assert w.sum() == pytest.approx(1.0) and (mode_selection == "none") == (w > 0).all()  # provenance shows the choice
