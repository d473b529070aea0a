"""Demonstration files: HDF5 round trip, atomic append, validation errors, robomimic datasets, collection."""

import json
import os
import stat

import h5py
import numpy as np
import pytest
from vinn_policy.demos.dataset import DemoFileError, load_demos, load_obs, validate_file, write_demos
from vinn_policy.envs import task_variation

from vinn_policy.harness.rollout import Episode

ENV_ARGS = {"env_name": "vinn/Door-v1", "type": "vinn_policy", "env_kwargs": {"image_size": 16}, "image_key": "sideview_image",
            "expert": "DoorExpert-v2", "variation": task_variation("door")}


def fake_episode(seed: int, steps: int = 5) -> Episode:
    rng = np.random.default_rng(seed)
    return Episode(
        seed=seed, success=True, steps=steps, wall_time=0.1,
        actions=rng.uniform(-1, 1, (steps, 4)).astype(np.float32),
        executed=rng.uniform(-1, 1, (steps, 4)).astype(np.float32),
        rewards=np.zeros(steps, np.float32), dones=np.eye(1, steps, steps - 1, dtype=np.uint8)[0],
        states=rng.normal(size=(steps, 9)),
        obs={"sideview_image": rng.integers(0, 255, (steps, 16, 16, 3), dtype=np.uint8),
             "robot0_eef_pos": rng.normal(size=(steps, 3)).astype(np.float32)},
    )


def test_round_trip_in_robomimic_layout(tmp_path):
    path = tmp_path / "door.hdf5"
    episodes = [fake_episode(s, steps=4 + s) for s in range(3)]
    assert write_demos(path, episodes, ENV_ARGS) == 3
    with h5py.File(path) as f:
        assert f["data"].attrs["total"] == 4 + 5 + 6
        assert json.loads(f["data"].attrs["env_args"]) == ENV_ARGS
        demo = f["data/demo_1"]
        assert demo.attrs["num_samples"] == 5 and demo["obs/sideview_image"].dtype == np.uint8
        for key in ("actions", "rewards", "dones", "states", "actions_executed"):
            assert len(demo[key]) == 5
    demos = load_demos(path)
    assert demos.frames.shape == (15, 16, 16, 3) and demos.actions.dtype == np.float32
    assert demos.episode_ids.tolist() == [0] * 4 + [1] * 5 + [2] * 6
    assert demos.frame_indices[:5].tolist() == [0, 1, 2, 3, 0] and demos.seeds == [0, 1, 2]
    np.testing.assert_array_equal(demos.actions[4:9], episodes[1].actions)
    np.testing.assert_array_equal(demos.frames[9:], episodes[2].obs["sideview_image"])
    sub = demos.select([2, 0])
    assert sub.seeds == [2, 0] and sub.episode_ids.tolist() == [0] * 6 + [1] * 4


def test_load_obs_follows_load_demos_frame_order_and_names_missing_keys(tmp_path):
    path = tmp_path / "demos.hdf5"
    episodes = [fake_episode(s, steps=3 + s) for s in range(12)]  # demo_10 sorts after demo_9, not after demo_1
    write_demos(path, episodes, ENV_ARGS)
    obs = load_obs(path, ["robot0_eef_pos"], max_episodes=11)
    demos = load_demos(path, max_episodes=11)
    expected = np.concatenate([e.obs["robot0_eef_pos"] for e in episodes[:11]])
    assert len(obs["robot0_eef_pos"]) == len(demos.frames)
    np.testing.assert_array_equal(obs["robot0_eef_pos"], expected)
    with pytest.raises(DemoFileError, match="no \\['cubeA_pos'\\]; available"):
        load_obs(path, ["robot0_eef_pos", "cubeA_pos"])


def test_append_keeps_existing_demos_and_refuses_other_settings(tmp_path):
    path = tmp_path / "door.hdf5"
    write_demos(path, [fake_episode(0)], ENV_ARGS)
    with pytest.raises(FileExistsError, match="append"):
        write_demos(path, [fake_episode(1)], ENV_ARGS)
    assert write_demos(path, [fake_episode(1), fake_episode(2)], ENV_ARGS, append=True) == 3
    demos = load_demos(path)
    assert demos.seeds == [0, 1, 2]
    np.testing.assert_array_equal(demos.actions[:5], fake_episode(0).actions)
    with pytest.raises(DemoFileError, match="Cannot append"):
        write_demos(path, [fake_episode(3)], {**ENV_ARGS, "env_kwargs": {"image_size": 84}}, append=True)
    assert load_demos(path).seeds == [0, 1, 2]


def test_demo_files_get_the_usual_permissions_not_owner_only(tmp_path):
    umask = os.umask(0o022)
    try:
        write_demos(tmp_path / "door.hdf5", [fake_episode(0)], ENV_ARGS)
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "door.hdf5").stat().st_mode) == 0o644


def test_crash_while_appending_leaves_the_old_file_intact(tmp_path):
    path = tmp_path / "door.hdf5"
    write_demos(path, [fake_episode(0)], ENV_ARGS)
    before = path.read_bytes()

    def exploding():
        yield fake_episode(1)
        raise KeyboardInterrupt("killed mid-write")

    with pytest.raises(KeyboardInterrupt):
        write_demos(path, exploding(), ENV_ARGS, append=True)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["door.hdf5"]


def test_truncated_and_missing_files(tmp_path):
    path = tmp_path / "door.hdf5"
    write_demos(path, [fake_episode(0), fake_episode(1)], ENV_ARGS)
    data = path.read_bytes()
    (tmp_path / "cut.hdf5").write_bytes(data[: len(data) // 3])
    with pytest.raises(DemoFileError, match="truncated"):
        load_demos(tmp_path / "cut.hdf5")
    with pytest.raises(DemoFileError, match="not found"):
        load_demos(tmp_path / "none.hdf5")


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda f: f["data/demo_0"].__delitem__("actions"), "lacks 'actions'"),
        (lambda f: f.__delitem__("data"), "no 'data' group"),
        (lambda f: _replace(f, "data/demo_0/obs/sideview_image", np.zeros((5, 16, 16, 3), np.float32)), "must be uint8"),
        (lambda f: _replace(f, "data/demo_0/actions", np.zeros((4, 4), np.float32)), "expected equal"),
        (lambda f: _replace(f, "data/demo_0/actions", np.full((5, 4), np.nan, np.float32)), "NaN"),
        (lambda f: f["data"].attrs.__setitem__("env_args", "{oops"), "not JSON"),
    ],
)
def test_invalid_layouts_say_what_is_wrong(tmp_path, mutate, match):
    path = tmp_path / "door.hdf5"
    write_demos(path, [fake_episode(0)], ENV_ARGS)
    with h5py.File(path, "a") as f:
        mutate(f)
    with pytest.raises(DemoFileError, match=match):
        load_demos(path)


def _replace(f, name, value):
    del f[name]
    f[name] = value


def test_reads_a_robomimic_image_dataset(tmp_path):
    """robomimic's lift/ph/image.hdf5 layout: two cameras, 7-D actions, no seeds, extra obs keys."""
    path = tmp_path / "image.hdf5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["total"] = 7
        data.attrs["env_args"] = json.dumps({"env_name": "Lift", "type": 1, "env_kwargs": {}})
        for i, n in enumerate((3, 4)):
            demo = data.create_group(f"demo_{i}")
            demo.attrs["num_samples"] = n
            demo["actions"] = rng.uniform(-1, 1, (n, 7))
            demo["obs/agentview_image"] = rng.integers(0, 255, (n, 84, 84, 3), dtype=np.uint8)
            demo["obs/robot0_eye_in_hand_image"] = rng.integers(0, 255, (n, 84, 84, 3), dtype=np.uint8)
            demo["obs/object"] = rng.normal(size=(n, 10))
    with pytest.raises(DemoFileError, match="pass image_key"):
        load_demos(path)
    demos = load_demos(path, image_key="agentview_image")
    assert demos.frames.shape == (7, 84, 84, 3) and demos.actions.shape == (7, 7) and demos.seeds == [None, None]
    assert validate_file(path, "robot0_eye_in_hand_image")["frames"] == 7


@pytest.mark.sim
def test_collect_command_writes_a_valid_file_and_appends(tmp_path):
    from vinn_policy.demos.collect import CollectArgs, collect

    args = CollectArgs(task="stack", episodes=2, out=str(tmp_path / "stack.hdf5"), image_size=48, workers=1)
    report = collect(args, progress=False)
    assert report.kept == 2 and report.total_demos == 2
    demos = load_demos(report.path)
    assert demos.image_key == "robot0_eye_in_hand_image" and demos.frames.shape[1:] == (48, 48, 3)
    assert validate_file(report.path)["env_args"]["env_kwargs"] == {"image_size": 48, "camera": "robot0_eye_in_hand"}
    assert demos.seeds == [0, 1]
    cubes = load_obs(report.path, ["cubeA_pos", "cubeB_pos"])  # the privileged state, for stack_analysis.py
    assert cubes["cubeA_pos"].shape == cubes["cubeB_pos"].shape == (len(demos.frames), 3)
    with pytest.raises(FileExistsError):
        collect(args, progress=False)
    args.append, args.episodes = True, 1
    assert collect(args, progress=False).total_demos == 3
    assert load_demos(report.path).seeds == [0, 1, 2]  # appending continues after the largest seed
    with pytest.raises(DemoFileError, match="Cannot append"):  # another camera's frames never join the file
        collect(CollectArgs(task="stack", episodes=1, out=args.out, image_size=48, workers=1, append=True,
                            camera="agentview"), progress=False)
    other = collect(CollectArgs(task="stack", episodes=1, out=str(tmp_path / "agentview.hdf5"), image_size=48, workers=1,
                                camera="agentview"), progress=False)
    summary = validate_file(other.path)
    assert summary["image_key"] == "agentview_image"
    assert summary["env_args"]["env_kwargs"] == {"image_size": 48, "camera": "agentview"}
    both = collect(CollectArgs(task="stack", episodes=1, out=str(tmp_path / "both.hdf5"), image_size=48, workers=1,
                               extra_cameras=("agentview",)), progress=False)
    wrist, agent = load_demos(both.path), load_demos(both.path, image_key="agentview_image")
    assert wrist.image_key == "robot0_eye_in_hand_image" and agent.frames.shape == wrist.frames.shape
    np.testing.assert_array_equal(agent.frames[0], load_demos(other.path).frames[0])  # seed 0 seen from agentview, as alone
    assert validate_file(both.path)["env_args"]["env_kwargs"]["extra_cameras"] == ["agentview"]


def no_episodes(*args, **kwargs):
    raise AssertionError("an episode ran")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"append": True, "episodes": 5}, r"seeds 999991\.\.1000000.*already reach seed 999990"),  # --append
        ({"episodes": 600_000}, r"seeds 0\.\.1199999"),  # large --episodes
        ({"seed": 999_999, "episodes": 1}, r"seeds 999999\.\.1000000.*--seed is 999999"),  # large --seed
        ({"seed": 999_990, "episodes": 5, "max_failures": 6}, r"up to 6 failures may use seeds 999990\.\.1000000"),
    ],
)
def test_collect_refuses_seeds_that_could_reach_the_evaluation_range_before_running(tmp_path, monkeypatch, kwargs, match):
    from vinn_policy.demos import collect as collect_module
    from vinn_policy.demos.collect import CollectArgs

    path = tmp_path / "door.hdf5"
    write_demos(path, [fake_episode(999_990)], ENV_ARGS)
    monkeypatch.setattr(collect_module, "rollouts", no_episodes)
    args = CollectArgs(task="door", out=str(path if kwargs.get("append") else tmp_path / "new.hdf5"), workers=1, **kwargs)
    with pytest.raises(ValueError, match=match) as refused:
        collect_module.collect(args, progress=False)
    assert "must stay in [0, 1000000)" in str(refused.value) and "a new file" in str(refused.value)
    assert load_demos(path).seeds == [999_990]


def test_failed_expert_episodes_use_at_most_the_seeds_the_range_check_allows_for(tmp_path, monkeypatch):
    from vinn_policy.demos import collect as collect_module
    from vinn_policy.demos.collect import EVAL_SEED_BASE, CollectArgs

    used = []

    def failing(make, make_policy, seeds, workers, **kwargs):
        for seed in seeds:
            used.append(seed)
            yield Episode(seed=seed, success=False, steps=1, wall_time=0.0)

    monkeypatch.setattr(collect_module, "rollouts", failing)
    args = CollectArgs(task="door", out=str(tmp_path / "door.hdf5"), seed=999_990, episodes=5, max_failures=5, workers=1)
    with pytest.raises(RuntimeError, match="failed 10 times"):
        collect_module.collect(args, progress=False)
    assert used == list(range(999_990, EVAL_SEED_BASE))  # the whole allowance, and not one seed more


@pytest.mark.parametrize("task", ["door", "push", "stack", "push_around"])
def test_an_expert_given_an_image_policy_observation_names_the_missing_keys_and_the_fix(task):
    from vinn_policy.demos.experts import make_expert

    obs = {"image": np.zeros((8, 8, 3), np.uint8), "robot0_eef_pos": np.zeros(3, np.float32),
           "robot0_gripper_qpos": np.zeros(2, np.float32)}
    expert = make_expert(task)
    with pytest.raises(ValueError, match=rf"privileged observation keys \[{expert.keys[0]!r}.*privileged=True"):
        expert.act(obs)


def test_fit_file_streams_batches_and_equals_fit_on_loaded_demos(tmp_path, tiny_encoder, monkeypatch):
    from vinn_policy.demos.dataset import iter_demo_batches

    from vinn_policy import VINNPolicy

    path = tmp_path / "door.hdf5"
    write_demos(path, [fake_episode(s, steps=4 + s) for s in range(3)], ENV_ARGS)  # 4 + 5 + 6 frames
    batches = list(iter_demo_batches(path, batch_size=4))
    assert [len(b.frames) for b in batches] == [4, 4, 1, 4, 2]  # never more than 4 frames, never across demos
    demos = load_demos(path)
    np.testing.assert_array_equal(np.concatenate([b.frames for b in batches]), demos.frames)
    np.testing.assert_array_equal(np.concatenate([b.frame_indices for b in batches]), demos.frame_indices)

    seen = []
    embed = tiny_encoder.embed
    monkeypatch.setattr(tiny_encoder, "embed", lambda x, batch_size=256: seen.append(len(x)) or embed(x, batch_size))
    streamed = VINNPolicy.fit_file(path, tiny_encoder, batch_size=4, k=3, gripper_index=3)
    assert max(seen) == 4  # the encoder only ever held one batch of frames
    fitted = VINNPolicy.fit(demos.frames, demos.actions, demos.episode_ids, encoder=tiny_encoder, k=3, gripper_index=3,
                            frame_indices=demos.frame_indices)
    np.testing.assert_allclose(streamed.database.embeddings, fitted.database.embeddings, atol=1e-5)
    for f in demos.frames[::3]:
        np.testing.assert_allclose(streamed.act(f), fitted.act(f), atol=1e-5)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        next(iter_demo_batches(path, batch_size=0))


def test_cached_demos_of_another_camera_or_env_version_are_refused_not_used(tmp_path):
    from vinn_policy.harness.pipeline import demo_path, ensure_demos

    assert demo_path("door", tmp_path, 16) == tmp_path / "door-v1_16px.hdf5"  # each env version keeps its own demos
    write_demos(tmp_path / "door-v1_16px.hdf5", [fake_episode(0)], {**ENV_ARGS, "action_noise": 0.1})
    assert ensure_demos("door", 1, tmp_path, image_size=16, progress=False).image_key == "sideview_image"
    wrong = {**ENV_ARGS, "action_noise": 0.1, "image_key": "agentview_image"}
    episode = fake_episode(0)
    episode.obs["agentview_image"] = episode.obs.pop("sideview_image")
    write_demos(tmp_path / "door-v1_8px.hdf5", [episode], wrong)
    with pytest.raises(DemoFileError, match="agentview_image frames, not sideview_image"):
        ensure_demos("door", 1, tmp_path, image_size=8, progress=False)
    write_demos(tmp_path / "door-v1_4px.hdf5", [fake_episode(0)], {**ENV_ARGS, "action_noise": 0.1, "env_name": "vinn/Door-v0"})
    with pytest.raises(DemoFileError, match="collected on vinn/Door-v0, not vinn/Door-v1"):
        ensure_demos("door", 1, tmp_path, image_size=4, progress=False)
    write_demos(tmp_path / "door-v1_2px.hdf5", [fake_episode(0)], {**ENV_ARGS, "action_noise": 0.1, "expert": "DoorExpert-v1"})
    with pytest.raises(DemoFileError, match="made by expert DoorExpert-v1, not DoorExpert-v2"):  # the phase machine's
        ensure_demos("door", 1, tmp_path, image_size=2, progress=False)
    narrow = {**task_variation("door"), "x_range": [0.07, 0.09]}  # drawn from another placement distribution
    write_demos(tmp_path / "door-v1_3px.hdf5", [fake_episode(0)], {**ENV_ARGS, "action_noise": 0.1, "variation": narrow})
    with pytest.raises(DemoFileError, match=r"drawn from the variation .*'x_range': \[0.07, 0.09\]"):
        ensure_demos("door", 1, tmp_path, image_size=3, progress=False)
    assert demo_path("door", tmp_path, 5, extra_cameras=("agentview",)) == tmp_path / "door-v1+agentview_5px.hdf5"
    write_demos(tmp_path / "door-v1+agentview_5px.hdf5", [fake_episode(0)], {**ENV_ARGS, "action_noise": 0.1})  # records none
    with pytest.raises(DemoFileError, match=r"records the extra cameras \(\), not \('agentview',\)"):
        ensure_demos("door", 1, tmp_path, image_size=5, progress=False, extra_cameras=("agentview",))
