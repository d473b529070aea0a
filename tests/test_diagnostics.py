"""Assumption diagnostics on synthetic data where the right verdict is known."""

import json

import numpy as np
import pytest
from vinn_policy.demos.dataset import write_demos

from tests.test_demos import ENV_ARGS, fake_episode
from vinn_policy.database import EmbeddingDatabase
from vinn_policy.diagnostics import (
    DiagnoseArgs,
    action_consistency,
    coverage,
    diagnose,
    run,
)
from vinn_policy.lwr import opposing_groups, typical_action_norm


def toy_database(strategy: str, episodes: int = 20, length: int = 30, seed: int = 0) -> EmbeddingDatabase:
    """States are a 1-D progress variable embedded in 8-D; actions [dx, dy, dz, grip] follow `strategy`.

    unimodal: every episode moves +x, faster as it progresses, weaving in y. bimodal: at the same states, even episodes move
    left (-y) and odd ones right (+y), as two demonstration strategies would. random: actions ignore the state.
    """
    rng = np.random.default_rng(seed)
    emb, act, eps = [], [], []
    direction = rng.normal(size=8)
    for e in range(episodes):
        s = np.sort(rng.uniform(0, 1, length))
        emb.append(s[:, None] * direction + 0.01 * rng.normal(size=(length, 8)))
        a = np.zeros((length, 4))
        if strategy == "unimodal":
            a[:, 0], a[:, 1] = 0.2 + 0.8 * s, 0.5 * np.sin(2 * np.pi * s)
        elif strategy == "bimodal":
            a[:, 1] = 1.0 if e % 2 else -1.0
        else:
            a[:, :3] = rng.uniform(-1, 1, (length, 3))
        a[:, :3] += 0.05 * rng.normal(size=(length, 3))
        a[:, 3] = np.where(s > 0.5, 1.0, -1.0)
        act.append(a)
        eps.append(np.full(length, e))
    return EmbeddingDatabase(np.concatenate(emb), np.concatenate(act), np.concatenate(eps), gripper_index=3)


def test_opposing_groups_flags_two_opposite_modes_only():
    rng = np.random.default_rng(0)
    w = np.full((3, 10), 0.1)
    bimodal = np.concatenate([np.tile([1.0, 0, 0], (5, 1)), np.tile([-1.0, 0, 0], (5, 1))]) + 0.05 * rng.normal(size=(10, 3))
    unimodal = np.tile([1.0, 0.2, 0], (10, 1)) + 0.3 * rng.normal(size=(10, 3))
    still = 0.05 * rng.normal(size=(10, 3))  # noise around zero: no real motion to average away
    flags, heavy = opposing_groups(np.stack([bimodal, unimodal, still]), w, min_norm=0.2)
    assert flags.tolist() == [True, False, False]
    assert heavy[0].sum() == 5 and len(np.unique(np.sign(bimodal[heavy[0], 0]))) == 1  # one mode, whole


def test_minority_mode_below_min_share_is_not_flagged():
    acts = np.array([[1.0, 0, 0]] * 9 + [[-1.0, 0, 0]])[None]
    flags, heavy = opposing_groups(acts, np.full((1, 10), 0.1), min_norm=0.2, min_share=0.2)
    assert not flags[0] and heavy[0].tolist() == [True] * 9 + [False]


def test_bimodal_demonstrations_are_flagged_and_unimodal_are_not():
    bimodal = diagnose(toy_database("bimodal"), k=8)
    unimodal = diagnose(toy_database("unimodal"), k=8)
    assert bimodal.multimodality["fraction"] > 0.5 and bimodal.multimodality["verdict"] == "violated"
    assert unimodal.multimodality["fraction"] < 0.05 and unimodal.multimodality["verdict"] == "holds"


def test_action_consistency_separates_state_dependent_from_random_actions():
    good = action_consistency(toy_database("unimodal"), k=8)
    bad = action_consistency(toy_database("random"), k=8)
    assert good["spread_ratio"] < 0.5 and good["rank_correlation"] > 0.5 and good["verdict"] == "holds"
    assert bad["spread_ratio"] > 0.8 and abs(bad["rank_correlation"]) < 0.1 and bad["verdict"] == "violated"


def test_typical_action_norm_ignores_the_gripper():
    assert typical_action_norm(np.array([[3.0, 4, 0, 1], [0, 0, 0, -1], [0, 1, 0, 1]]), gripper_index=3) == pytest.approx(1.0)


def test_coverage_holds_in_distribution_and_is_violated_off_it():
    rng = np.random.default_rng(0)
    demo = rng.gamma(4, 1, 2000)
    assert coverage(demo, rng.gamma(4, 1, 500))["verdict"] == "holds"
    shifted = coverage(demo, rng.gamma(4, 1, 500) + 4)
    assert shifted["verdict"] == "violated" and shifted["beyond_demo_p95"] > 0.3
    with pytest.raises(ValueError, match="rollout distances"):
        coverage(demo, [])


def test_diagnostics_command_writes_a_report(tmp_path, tiny_encoder):
    demos = tmp_path / "toy.hdf5"
    write_demos(demos, [fake_episode(s, steps=8) for s in range(4)], ENV_ARGS)
    tiny_encoder.save(tmp_path / "encoder")
    result = run(DiagnoseArgs(demos=str(demos), encoder=str(tmp_path / "encoder"), k=3, out=str(tmp_path / "report")))
    saved = json.loads((tmp_path / "report" / "diagnostics.json").read_text())
    assert saved == json.loads(json.dumps(result)) and saved["coverage"] is None
    assert "| unimodality |" in (tmp_path / "report" / "diagnostics.md").read_text()
    with pytest.raises(Exception, match="neither an encoder nor a VINN policy"):
        run(DiagnoseArgs(demos=str(demos), encoder=str(demos), out=str(tmp_path / "x")))


def test_coverage_rollouts_see_through_the_demonstrations_camera(tmp_path, tiny_encoder, monkeypatch):
    import vinn_policy.demos.collect  # noqa: F401  imported before the patch, or it would keep the patched make_env
    import vinn_policy.envs

    import vinn_policy.harness.evaluation

    episodes = [fake_episode(s, steps=8) for s in range(4)]
    for episode in episodes:
        episode.obs["agentview_image"] = episode.obs.pop("sideview_image")  # door's default camera is sideview
    demos = tmp_path / "agentview.hdf5"
    write_demos(demos, episodes, {**ENV_ARGS, "env_kwargs": {"image_size": 16, "camera": "agentview"}, "image_key": "agentview_image"})
    tiny_encoder.save(tmp_path / "encoder")
    made = {}

    def record(task, **kwargs):
        made.update(kwargs, task=task)
        raise RuntimeError("env made")

    monkeypatch.setattr(vinn_policy.envs, "make_env", record)
    with pytest.raises(RuntimeError, match="env made"):
        run(DiagnoseArgs(demos=str(demos), encoder=str(tmp_path / "encoder"), k=3, rollouts=1, workers=1, out=str(tmp_path / "r")))
    assert made["task"] == "door" and made["camera"] == "agentview" and made["image_size"] == 16

    def seeds_only(make, paths, seeds, workers):
        made.update(seeds=list(seeds))
        raise RuntimeError("evaluated")

    monkeypatch.setattr(vinn_policy.harness.evaluation, "evaluate_methods", seeds_only)
    with pytest.raises(RuntimeError, match="evaluated"):
        run(DiagnoseArgs(demos=str(demos), encoder=str(tmp_path / "encoder"), k=3, rollouts=2, workers=1, out=str(tmp_path / "r")))
    assert made["seeds"] == [1_001_000, 1_001_001]  # development block 1: the test block is for the final runs
    with pytest.raises(ValueError, match="block 0 is the test block"):
        DiagnoseArgs(demos=str(demos), encoder=str(tmp_path / "encoder"), rollouts=2, block=0)


def test_a_coverage_verdict_on_its_threshold_says_so():
    demo = np.arange(1000.0)  # 95th percentile 949.05
    just_over = np.concatenate([np.full(89, 2000.0), np.zeros(811)])  # 9.9% beyond, threshold 10% over 900 steps
    assert coverage(demo, just_over)["verdict"] == "holds (on the threshold)"
    clearly = np.concatenate([np.full(10, 2000.0), np.zeros(890)])
    assert coverage(demo, clearly)["verdict"] == "holds"
