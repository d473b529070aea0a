"""The benchmark harness without the simulator: where a run writes, which k each kNN method uses, replay's checks."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from vinn_policy.demos.dataset import Demos

from vinn_policy.artefact import artefact_digest
from vinn_policy.baselines import RandomPolicy
from vinn_policy.encoder import Encoder
from vinn_policy.harness import training
from vinn_policy.harness.benchmark import BenchmarkArgs, compare_with_recorded
from vinn_policy.harness.rollout import Episode
from vinn_policy.harness.training import train_policies

from .conftest import make_episodes
from .test_benchmarks import load_script


def test_a_users_run_writes_under_runs_and_only_an_explicit_out_refreshes_committed_results():
    assert BenchmarkArgs(task="door").report_dir == Path("runs/door") == BenchmarkArgs(task="door").work_dir
    assert BenchmarkArgs(task="push", smoke=True).report_dir == Path("runs/smoke-push")
    assert BenchmarkArgs(task="door", out="benchmarks/results/door").report_dir == Path("benchmarks/results/door")


def test_each_knn_method_chooses_its_own_k_from_one_embedding_of_the_demos(tmp_path, tiny_config, monkeypatch):
    torch.manual_seed(5)  # not the untrained baseline's seed: stands in for a trained encoder
    tiny_encoder = Encoder(tiny_config)
    frames, actions, eps = make_episodes(n_episodes=5, length=6)
    data = Demos(frames, actions, eps, np.tile(np.arange(6), 5), "image", {}, list(range(5)))
    args = BenchmarkArgs(task="door", demos=3, methods=("vinn", "vinn_random"))
    embedded: dict[int, int] = {}
    embed = Encoder.embed

    def counting_embed(self, images, batch_size=256):
        embedded[id(self)] = embedded.get(id(self), 0) + len(images)
        return embed(self, images, batch_size)

    seen, choose_k = [], training.choose_k

    def fake_choose_k(embeddings, *rest):  # each encoder's own validation choice: 2 for BYOL's, 4 for the untrained one
        seen.append(embeddings)
        return 2 * len(seen), choose_k(embeddings, *rest)[1]

    monkeypatch.setattr(Encoder, "embed", counting_embed)
    monkeypatch.setattr(training, "choose_k", fake_choose_k)
    info = train_policies(args, data, 3, tiny_encoder, tmp_path / "policies")
    assert info["k_by_method"] == {"vinn": 2, "vinn_random": 4} and info["k"] == 2
    assert embedded[id(tiny_encoder)] == len(frames)  # k's choice and the database share one embedding
    assert not np.allclose(seen[0], seen[1])  # the untrained encoder's own embeddings chose its k
    for name, k in info["k_by_method"].items():
        assert json.loads((Path(info["paths"][name]) / "config.json").read_text())["policy"]["k"] == k


def test_the_recorded_vinn_k_is_vinns_own_not_a_variants_on_the_same_encoder(tmp_path, tiny_config, monkeypatch):
    frames, actions, eps = make_episodes(n_episodes=5, length=6)
    data = Demos(frames, actions, eps, np.tile(np.arange(6), 5), "image", {}, list(range(5)))
    args = BenchmarkArgs(task="door", demos=3, methods=("vinn", "vinn_chunk"), chunk=3)
    calls, choose_k = [], training.choose_k

    def fake_choose_k(embeddings, *rest):  # VINN chooses 2, the chunked variant after it 4
        calls.append(1)
        return 2 * len(calls), choose_k(embeddings, *rest)[1]

    monkeypatch.setattr(training, "choose_k", fake_choose_k)
    info = train_policies(args, data, 3, Encoder(tiny_config), tmp_path / "policies")
    assert info["k_by_method"] == {"vinn": 2, "vinn_chunk": 4} and info["k"] == 2


def test_replay_compares_only_with_the_episode_its_saved_policy_produced(tmp_path):
    path = RandomPolicy(seed=0).save(tmp_path / "policies" / "random")
    results = tmp_path / "results.json"
    row = {"method": "random", "seed": 5, "success": False, "steps": 40}
    episode = Episode(seed=5, success=False, steps=40, wall_time=1.0)

    results.write_text(json.dumps({"episodes": [row], "policies": {"random": {"sha256": artefact_digest(path)}}}))
    assert compare_with_recorded(results, "random", 5, path, episode)["reproduces"] is True
    episode.steps = 39
    assert compare_with_recorded(results, "random", 5, path, episode)["reproduces"] is False

    RandomPolicy(seed=1).save(path)  # trained again since the recorded run
    out = compare_with_recorded(results, "random", 5, path, episode)
    assert out["reproduces"] is None and "is not the policy that produced" in out["why"]
    results.write_text(json.dumps({"episodes": [row]}))  # a results.json from before checksums were recorded
    out = compare_with_recorded(results, "random", 5, path, episode)
    assert out["reproduces"] is None and "records no checksum" in out["why"]
    assert "no random episode with seed 6" in compare_with_recorded(results, "random", 6, path, episode)["why"]


@pytest.mark.parametrize("action_dim", [4, 7])
def test_the_gripper_is_the_last_action_dimension_everywhere(action_dim):
    from vinn_policy.harness.offline import OfflineConfig, knn_curve

    # A robomimic-style 7-D action [dx, dy, dz, rx, ry, rz, grip]: dimension 3 is a rotation, blended, never voted.
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 4)).astype(np.float32)
    actions = rng.uniform(-0.5, 0.5, (40, action_dim)).astype(np.float32)
    actions[:, -1] = np.where(rng.random(40) > 0.5, 1.0, -1.0)
    curve = knn_curve(emb, actions, np.arange(40) // 4, np.arange(32), np.arange(32, 40), OfflineConfig(k_max=5))
    assert curve["gripper_accuracy"]  # a gripper was voted on...
    from vinn_policy.database import EmbeddingDatabase

    db = EmbeddingDatabase(emb, actions, np.arange(40) // 4, gripper_index=OfflineConfig().gripper_index)
    blended = db.query(emb[:3] + 0.1, k=5).actions
    assert db.gripper_index == action_dim - 1 and set(blended[:, -1]) <= {-1.0, 1.0}  # ...the last dimension
    if action_dim == 7:  # the rotation rx is blended: values between its extremes, not a vote's -0.5 / +0.5
        assert (np.abs(blended[:, 3]) < np.abs(actions[:, 3]).max() - 1e-3).all()
    assert BenchmarkArgs().bc_config("bc").gripper_index == -1  # BC resolves it against the action size when fitting


def test_results_name_the_evaluation_block():
    assert BenchmarkArgs().block == "development 1" and BenchmarkArgs().eval_seeds()[0] == 1_001_000  # checks stay off the test block
    assert BenchmarkArgs(seed=0).block == "test" and BenchmarkArgs(seed=0).eval_seeds()[0] == 1_000_000
    dev = BenchmarkArgs(seed=1)
    assert dev.block == "development 1" and dev.eval_seeds()[0] == 1_001_000
    with pytest.raises(ValueError, match="a block holds 1000 seeds"):
        BenchmarkArgs(episodes=1001)  # would spill into the next block
    with pytest.raises(ValueError, match="development block"):
        BenchmarkArgs(seed=0, k_sweep=(1, 5))
    assert BenchmarkArgs(seed=2, k_sweep=(1, 5)).k_sweep == (1, 5)


def test_the_all_tasks_table_names_results_from_before_train_seeds_by_todays_method_names(tmp_path):
    cell = {"successes": 1, "episodes": 2, "success_rate": 0.5, "wilson_95": [0.1, 0.9], "mean_steps_success": 10.0}
    old = {"args": {"task": "door", "methods": ["vinn", "bc"], "episodes": 2, "demos": 2, "paper": False, "byol_epochs": 1,
                    "bc_epochs": 6, "camera": "sideview"},
           "summary": {"methods": {"vinn": cell, "bc": cell}}, "k": 3, "encoder": {"kind": "byol", "config": {"arch": "resnet18", "image_size": 84}},
           "wall_seconds": 60, "stage_seconds": {}, "sweeps": {}}  # one training at the top level; its "bc" was the paper's
    (tmp_path / "door").mkdir()
    (tmp_path / "door" / "results.json").write_text(json.dumps(old))
    script = load_script("closed_loop")
    table = script.main(script.Args(tasks=("door",), results=str(tmp_path)))
    assert set(table["door"]["summary"]) == {"vinn", "bc_paper"} and table["door"]["k"] == [3]
    md = (tmp_path / "closed_loop.md").read_text()
    assert "BC (paper)" in md and "robomimic" not in md and "per training" not in md  # one training: no spread to show

    spread = {**cell, "per_training": [0.25, 0.75], "mean": 0.5, "std": 0.35}
    new = {**old, "args": {**old["args"], "methods": ["vinn"]}, "summary": {"methods": {"vinn": spread}},
           "trainings": [{"k": 3, "encoder": old["encoder"]}, {"k": 5, "encoder": old["encoder"]}]}
    (tmp_path / "door" / "results.json").write_text(json.dumps(new))
    script.main(script.Args(tasks=("door",), results=str(tmp_path)))
    assert "| VINN | 50% [10, 90]; per training 50% ± 35 (25%, 75%) |" in (tmp_path / "closed_loop.md").read_text()
    run = {"reused": True, "wall_seconds": 3600}  # trainings recorded by earlier runs: their own time, not the reusing run's minute
    new["trainings"] = [{**t, "run": run} for t in new["trainings"]]
    (tmp_path / "door" / "results.json").write_text(json.dumps(new))
    script.main(script.Args(tasks=("door",), results=str(tmp_path)))
    assert "| 1.0 | 0.0 | 120 |" in (tmp_path / "closed_loop.md").read_text()


def test_alternating_timing_calls_each_function_once_per_round():
    from vinn_policy.harness.results import time_alternating

    calls = []
    timed = time_alternating({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=4, warmup=1)
    assert calls == ["a", "b"] + ["a", "b"] * 4  # warm-up, then a and b in turn: a drift in speed touches both alike
    assert set(timed) == {"a", "b"} and all(t["median_ms"] >= 0 for t in timed.values())


def test_act_latency_is_a_chunked_policys_cost_per_step_amortised(monkeypatch):
    from vinn_policy.harness import benchmark, results

    clock = [0.0]

    class EveryEighthStepQueries:  # 8 ms to query, then 7 free steps from the chunk
        calls = 0

        def reset(self, seed=None):
            self.calls = 0

        def act(self, obs):
            self.calls += 1
            threads.add(torch.get_num_threads())
            clock[0] += 8e-3 if self.calls % 8 == 1 else 0.0

    threads = set()
    monkeypatch.setattr(results.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(benchmark, "load_policy", lambda path: EveryEighthStepQueries())
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert benchmark.act_latency({"vinn_chunk": "unused"}, {})["vinn_chunk"] == pytest.approx(1.0)  # the median is 0
        assert threads == {1} and torch.get_num_threads() == 2  # timed as the evaluation's workers run it, then restored
    finally:
        torch.set_num_threads(before)


def test_time_calls_over_rounds_ignores_a_burst_of_other_work(monkeypatch):
    from vinn_policy.harness import results

    clock, calls = [0.0], [0]

    def act():  # 2 ms a call, but 500 ms each during the second round (the host busy with something else)
        calls[0] += 1
        clock[0] += 0.5 if 3 + 10 < calls[0] <= 3 + 20 else 2e-3

    monkeypatch.setattr(results.time, "perf_counter", lambda: clock[0])
    assert results.time_calls(act, repeats=10, rounds=5)["mean_ms"] == pytest.approx(2.0)
    calls[0] = 0
    assert results.time_calls(act, repeats=50)["mean_ms"] > 90  # one round: the burst is in the number


def test_a_finished_training_is_reused_only_by_a_run_with_the_same_fingerprint(tmp_path, capsys):
    from vinn_policy.harness.benchmark import TrainingRecords

    frames, actions, eps = make_episodes()
    data = Demos(frames, actions, eps, np.zeros_like(eps), "image", {}, [0, 1, 2, 3])
    args = BenchmarkArgs(task="door", out=str(tmp_path))
    saved = TrainingRecords(args, data).save(1, {"k": 3}, [{"method": "vinn", "seed": 7, "training": 1}], {}, 61.0, {"policies": 60.0})
    assert (tmp_path / "trainings" / "training1.json").exists() and saved["run"]["reused"] is False
    # where things go, how many trainings and how many workers do not change what one training produced
    same = BenchmarkArgs(task="door", out=str(tmp_path), workers=1, train_seeds=3, cache_dir=str(tmp_path / "elsewhere"))
    loaded = TrainingRecords(same, data).load(1)
    assert loaded["record"] == {"k": 3} and loaded["episodes"] == saved["episodes"] and loaded["run"]["reused"] is True
    assert TrainingRecords(same, data).load(0) is None  # never recorded
    assert TrainingRecords(BenchmarkArgs(task="door", out=str(tmp_path), k=5), data).load(1) is None
    assert "recorded by a run with other arguments" in capsys.readouterr().out
    other = Demos(frames, actions + 0.01, eps, np.zeros_like(eps), "image", {}, [0, 1, 2, 3])
    assert TrainingRecords(args, other).load(1) is None  # other demonstrations
    assert TrainingRecords(BenchmarkArgs(task="door", out=str(tmp_path), retrain=True), data).load(1) is None
    (tmp_path / "trainings" / "training1.json").write_text("{not json")
    assert TrainingRecords(args, data).load(1) is None and "unreadable" in capsys.readouterr().out


def test_replaying_a_training_whose_policies_are_not_here_says_how_to_get_them(tmp_path):
    from vinn_policy.harness.benchmark import replay

    args = BenchmarkArgs(task="door", out=str(tmp_path / "report"), run_dir=str(tmp_path / "run"), replay=1_001_000, method="bc", training=2)
    with pytest.raises(FileNotFoundError, match="training2.json, trains nothing"):
        replay(args)


def test_a_record_is_not_reused_after_the_packages_code_changes(tmp_path, monkeypatch):
    from vinn_policy.harness import benchmark

    frames, actions, eps = make_episodes()
    data = Demos(frames, actions, eps, np.zeros_like(eps), "image", {}, [0, 1, 2, 3])
    args = BenchmarkArgs(task="door", out=str(tmp_path))
    benchmark.TrainingRecords(args, data).save(0, {"k": 3}, [], {}, 1.0, {})
    assert benchmark.TrainingRecords(args, data).load(0) is not None
    monkeypatch.setattr(benchmark, "source_digest", lambda: "edited")
    assert benchmark.TrainingRecords(args, data).load(0) is None


def test_the_source_digest_reads_the_package_its_envs_and_demos_but_not_the_report_writer(monkeypatch):
    from vinn_policy.harness.benchmark import source_digest

    read, original = [], Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: read.append(self.as_posix()) or original(self))
    assert source_digest() == source_digest()
    assert any(f.endswith("/lwr.py") for f in read) and any("/envs/" in f for f in read) and any("/demos/" in f for f in read)
    assert not any(f.endswith("harness/report.py") for f in read)
