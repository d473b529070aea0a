"""The benchmark scripts run end to end on their smoke presets and write JSON + markdown (+ PNG)."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from vinn_policy import BYOLConfig, EncoderConfig
from vinn_policy.baselines.bc import BCConfig
from vinn_policy.harness.pipeline import cached_bc, cached_byol
from vinn_policy.policy import VINNPolicy

from .conftest import make_episodes

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_cached_byol_trains_once_then_reuses(tmp_path):
    frames = make_episodes(n_episodes=2, length=4)[0]
    config = BYOLConfig(encoder=EncoderConfig(image_size=32), epochs=1, batch_size=4, hidden_dim=16, projection_dim=8)
    first, info = cached_byol(frames, config, tmp_path, progress=False)
    again, info2 = cached_byol(frames, config, tmp_path, progress=False)
    assert not info["cached"] and info2["cached"] and info2["losses"] == info["losses"]
    np.testing.assert_array_equal(first.embed(frames[:2]), again.embed(frames[:2]))
    assert not (Path(info["path"]).parent / "checkpoint").exists()  # resume state is dropped once finished
    _, other = cached_byol(frames[::-1].copy(), config, tmp_path, progress=False)  # other data -> other entry
    assert not other["cached"] and other["path"] != info["path"]


def test_bc_is_cached_by_data_config_and_encoder(tmp_path, tiny_encoder):
    frames, actions, episodes = make_episodes(n_episodes=4, length=6)
    config = BCConfig(encoder=EncoderConfig(image_size=32), epochs=1, batch_size=8)
    first, info = cached_bc(frames, actions, episodes, config, [3], cache_dir=tmp_path)
    again, info2 = cached_bc(frames, actions, episodes, config, [3], cache_dir=tmp_path)
    assert not info["cached"] and info2["cached"] and info2["path"] == info["path"]
    np.testing.assert_array_equal(first.act_batch(frames[:3]), again.act_batch(frames[:3]))
    assert again.report.train_loss == first.report.train_loss  # the training record is saved with the policy
    assert not cached_bc(frames, actions * 0.5, episodes, config, [3], cache_dir=tmp_path)[1]["cached"]  # other actions
    rep, rep_info = cached_bc(frames, actions, episodes, config, [3], tiny_encoder, cache_dir=tmp_path)
    assert not rep_info["cached"] and rep.frozen and "bc_rep-" in rep_info["path"]
    assert cached_bc(frames, actions, episodes, config, [3], tiny_encoder, cache_dir=tmp_path)[1]["cached"]
    assert not cached_bc(frames, actions, episodes, config, [3], tiny_encoder, cache_dir=tmp_path, retrain=True)[1]["cached"]


@pytest.mark.sim
@pytest.mark.slow
def test_perf_smoke(tmp_path):
    perf = load_script("perf")
    data = perf.main(perf.Args(smoke=True, out=str(tmp_path), policy=str(tmp_path / "none")))
    assert json.loads((tmp_path / "perf.json").read_text())["act"][0]["frames"] == 1000
    # The bound, checked from what a reader knows rather than perf.py's formula: exact search must read every
    # stored embedding once, 512 values of 4 (float32) or 2 (float16) bytes per frame, at the measured bandwidth.
    gb_per_s = data["read_bandwidth_gb_per_s"]
    assert 0.1 < gb_per_s < 2000 and gb_per_s == max(data["read_kernels_gb_per_s"].values())  # the best of several read kernels
    assert set(data["read_kernels_gb_per_s"]) == {"torch.sum", "torch.amax", "numpy.sum", "numpy.max"}
    assert {r["codes"] for r in data["code_scans"]} == {"fp16", "int8"} and data["code_scans"][0]["recall_at_10"] > 0.9
    act = data["act"][0]
    assert act["auto_index"] == "exact" and {"search_blend_exact", "search_blend_ivf", "act_exact", "act_ivf", "act_auto"} <= set(act)
    ratio = data["auto_switch"]["act_over_encoder"]["auto"]["1000"]
    assert ratio == pytest.approx(act["act_auto"]["median_ms"] / act["encoder_auto"]["median_ms"])
    exact = {r["storage"]: r for r in data["backends"] if r["index"] == "exact" and r["data"] == "trajectories"}
    for storage, bytes_per_value in (("float32", 4), ("float16", 2)):
        stored_mb = exact[storage]["frames"] * 512 * bytes_per_value / 1e6
        assert exact[storage]["bandwidth_bound_ms"] == pytest.approx(stored_mb / gb_per_s, rel=1e-6)
    assert exact["float16"]["bandwidth_bound_ms"] == pytest.approx(exact["float32"]["bandwidth_bound_ms"] / 2)
    rows = {(r["index"], r["storage"], r["data"]): r for r in data["backends"]}
    assert rows["exact", "float32", "trajectories"]["recall_at_10"] == 1.0 and rows["flat", "float32", "trajectories"]["recall_at_10"] == 1.0
    assert rows["exact", "float16", "trajectories"]["bytes_per_frame"] * 2 == rows["exact", "float32", "trajectories"]["bytes_per_frame"]
    assert data["read_bandwidth_gb_per_s"] > 0.1 and rows["exact", "float32", "trajectories"]["bandwidth_bound_ms"] == pytest.approx(
        1000 * 2048 / (data["read_bandwidth_gb_per_s"] * 1e9) * 1e3)
    assert data["byol"]["images_per_s"]["vinn_policy"] > 0 and [r["workers"] for r in data["evaluation"]] == [1, 1, 2]
    assert all(r["steps"] == 2 * 5 for r in data["evaluation"])  # 2 episodes x 5 steps, untrained VINN never succeeds
    assert data["float16_effect"] is None and "skipped, no policy" in (tmp_path / "perf.md").read_text()


@pytest.mark.sim
@pytest.mark.slow
def test_offline_smoke(tmp_path):
    offline = load_script("offline")
    args = offline.Args(smoke=True, tasks=("stack",), out=str(tmp_path), data_dir=str(tmp_path / "data"),
                        cache_dir=str(tmp_path / "cache"))
    data = offline.main(args)
    methods = data["tasks"]["stack"]["methods"]
    assert {"vinn", "vinn_random", "bc", "bc_rep", "open_loop", "random"} <= set(methods)
    assert "| VINN (BYOL kNN) |" in (tmp_path / "offline.md").read_text()
    assert (tmp_path / "offline.png").stat().st_size > 1000


@pytest.mark.sim
@pytest.mark.slow
def test_bc_rep_check_smoke(tmp_path):
    script = load_script("bc_rep")
    results = script.main(script.Args(tasks=("door",), out=str(tmp_path), run_dir=str(tmp_path / "run"), data_dir=str(tmp_path / "data"),
                                      cache_dir=str(tmp_path / "cache"), smoke=True))
    assert set(results["door"]["mse"]) == {"vinn", *script.VARIANTS}
    assert results["door"]["epochs"]["raw, 6 epochs"]["epochs"] == 6  # its own cap, not the benchmark's (1 with --smoke)
    mse = results["door"]["mse"]
    assert mse["raw, 6 epochs"] != mse["standardised, 6 epochs"]  # the scaling reaches the head
    assert "BC-rep, standardised, to convergence" in (tmp_path / "bc_rep.md").read_text()


@pytest.mark.sim
@pytest.mark.slow
def test_experts_smoke(tmp_path):
    experts = load_script("experts")
    data = experts.main(experts.Args(smoke=True, tasks=("push",), out=str(tmp_path)))
    row = data["tasks"]["push"]
    assert row["no_noise"]["episodes"] == 4 and row["steps_per_s"]["2_processes"] > 0
    assert (tmp_path / "experts.md").exists()


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("task", ["push", "door"])
def test_state_oracle_smoke_on_the_development_block(tmp_path, task):
    oracle = load_script("state_oracle")
    data = oracle.main(oracle.Args(task=task, smoke=True, data_dir=str(tmp_path / "data"), out=str(tmp_path)))
    assert data["block"] == "development" and data["episodes"] == 2 and 1 <= data["k"] <= 50
    assert data["failed_seeds"] == [] or min(data["failed_seeds"]) >= 1_001_000  # block 1, never the test block
    assert "--seed 1" in (tmp_path / f"state_oracle_{task}.md").read_text()
    assert [f["seed"] for f in data["failures"]] == data["failed_seeds"]
    if task == "door":  # how far each failure got: the lever's and the hinge's largest angle
        assert all(-0.1 < f["max_handle_qpos"] < 1.7 and -0.1 < f["max_hinge_qpos"] < 1.7 for f in data["failures"])


@pytest.mark.sim
@pytest.mark.slow
def test_two_strategy_smoke(tmp_path):
    script = load_script("two_strategy")
    data = script.main(script.Args(smoke=True, workers=1, out=str(tmp_path / "out"), run_dir=str(tmp_path / "runs"),
                                   data_dir=str(tmp_path / "data"), cache_dir=str(tmp_path / "cache")))
    assert set(data["summary"]["methods"]) == {"vinn_one", "vinn", "vinn_dominant", "vinn_consistent"}
    assert all(s["episodes"] == 2 for s in data["summary"]["methods"].values())
    assert set(data["diagnostics"]) == {"vinn_one", "vinn"} and "multimodality" in data["diagnostics"]["vinn"]
    assert set(data["offline_translation_mse"]) == set(data["summary"]["methods"])
    saved = json.loads((tmp_path / "out" / "two_strategy.json").read_text())
    assert saved["summary"] == json.loads(json.dumps(data["summary"]))
    assert "| unimodality |" in (tmp_path / "out" / "two_strategy.md").read_text()


def test_stack_failures_are_counted_at_the_furthest_stage():
    classify = load_script("stack_analysis").classify
    T = 6
    a = np.tile([0.0, 0.0, 0.82], (T, 1))  # cube A resting on the table
    b = np.tile([0.1, 0.0, 0.82], (T, 1))
    at_a = np.tile([0.0, 0.0, 0.81], (T, 1))
    open_, close = -np.ones(T), np.r_[-1, -1, 1, 1, 1, 1]
    lifted = a + np.c_[np.zeros((T, 2)), [0, 0, 0, 0.05, 0.1, 0.1]]
    over_b = lifted.copy()
    over_b[-1, :2] = b[-1, :2] + 0.01

    def outcome(*args):
        return classify(*args)[0]

    assert outcome(at_a, over_b, b, close, True) == "stacked"
    assert outcome(at_a, over_b, b, close, False) == "carried A over B, never stacked it"
    assert outcome(at_a, lifted, b, close, False) == "lifted A, never carried it over B"
    assert outcome(at_a, a, b, close, False) == "closed at A, never lifted it"
    assert outcome(at_a + [0, 0, 0.08], a, b, close, False) == "closed only above A"
    assert outcome(at_a + [0.05, 0, 0], a, b, close, False) == "closed only away from cube A"
    assert outcome(at_a, a, b, open_, False) == "never closed the gripper"
    # A stray close far from A before the grasp does not hide the later stages.
    stray = at_a.copy()
    stray[1] += [0.1, 0, 0.1]
    assert outcome(stray, lifted, b, np.r_[-1, 1, -1, 1, 1, 1], False) == "lifted A, never carried it over B"
    _, evidence = classify(stray, lifted, b, np.r_[-1, 1, -1, 1, 1, 1], False)
    assert evidence["closes"] == 4 and evidence["nearest_close_cm"] == 0.0 and evidence["highest_lift_cm"] == 10.0


def test_stack_analysis_refuses_the_test_block():
    script = load_script("stack_analysis")
    with pytest.raises(SystemExit, match="block 0 is the test block"):
        script.main(script.Args(seed=0))


def test_door_vision_refuses_the_test_block():
    script = load_script("door_vision")
    with pytest.raises(ValueError, match="block 0 is the test block"):
        script.Args(block=0)


def test_experts_report_puts_door_vision_beside_the_expert(tmp_path):
    experts = load_script("experts")
    assert experts.door_needs_vision(tmp_path) == ""  # nothing measured yet: no section
    spread = {"handle_xy_m": {"std": [0.048, 0.044]}, "door_yaw_rad": {"std": 0.121}, "eef_start_m": {"std": [0.115, 0.149, 0.097]}}
    (tmp_path / "door_vision.json").write_text(json.dumps({
        "seeds": "1001000..1001049 (block 1)", "open_loop": {"success_rate": 0.26}, "expert": {"success_rate": 0.95},
        "blind_replay": {"demo_0": {"success_rate": 0.02}, "mean": 0.04}, "variation": spread}))
    section = experts.door_needs_vision(tmp_path)
    assert "| 1001000..1001049 (block 1) | 26% | 2% (4%) | 95% | 4.8 / 4.4 | 0.121 | 11.5 / 14.9 / 9.7 |" in section


@pytest.mark.sim
@pytest.mark.slow
def test_stack_analysis_smoke(tmp_path):
    script = load_script("stack_analysis")
    data = script.main(script.Args(smoke=True, k=2, episodes=2, out=str(tmp_path), data_dir=str(tmp_path / "data"),
                                   cache_dir=str(tmp_path / "cache")))
    rows = data["representations"]
    assert len(rows) == 6 and data["queries"] > 0
    # Searching by the true cube A offset is what the cube A error measures: that oracle must be the best at it.
    assert rows["oracle: cube A offset"]["cube_a_error_cm"] == min(r["cube_a_error_cm"] for r in rows.values())
    assert "| BYOL (VINN's encoder) |" in (tmp_path / "analysis.md").read_text()
    loop = data["closed_loop"]  # VINN's own episodes, each classified once
    assert sum(loop["counts"].values()) == len(loop["seeds"]) == 2 and {e["outcome"] for e in loop["episodes"].values()} <= set(loop["counts"])
    assert min(loop["seeds"]) >= 1_001_000  # a development block: an analysis informs design
    oracle = data["state_oracle"]["4"]  # the smoke preset's 4 demos
    assert oracle["seeds"] == loop["seeds"] and sum(oracle["counts"].values()) == 2 and oracle["successes"] == oracle["counts"]["stacked"]
    assert "## What a perfect encoder would allow" in (tmp_path / "analysis.md").read_text()


@pytest.mark.sim
@pytest.mark.slow
def test_vinn_variants_smoke_and_refuses_the_test_block(tmp_path):
    script = load_script("vinn_variants")
    with pytest.raises(SystemExit, match="development block"):
        script.main(script.Args(seed=0, smoke=True, out=str(tmp_path)))
    result = script.main(script.Args(task="door", chunks=(1, 3), requery=(0.0, 2.0), episodes=2, smoke=True, out=str(tmp_path)))
    assert list(result["summary"]["methods"]) == ["chunk 1", "chunk 3", "chunk 3, requery 2"]
    assert set(result["summary"]["paired"]) == {"chunk 3", "chunk 3, requery 2"}
    assert "| chunk 3, requery 2 |" in (tmp_path / "door.md").read_text()


@pytest.mark.sim
@pytest.mark.slow
def test_representations_compares_keys_of_the_saved_vinns_trunk_and_names_missing_bcs(tmp_path):
    from vinn_policy.encoder import Encoder
    from vinn_policy.harness.args import BenchmarkArgs
    from vinn_policy.harness.pipeline import ensure_demos

    script = load_script("representations")
    with pytest.raises(SystemExit, match="holds no saved VINN"):
        script.main(script.Args(task="door", smoke=True, run_dir=str(tmp_path / "none"), data_dir=str(tmp_path / "data"), out=str(tmp_path)))
    bench = BenchmarkArgs(task="door", smoke=True, data_dir=str(tmp_path / "data"))
    data = ensure_demos("door", bench.demos + bench.val_demos, bench.data_dir, image_size=bench.image_px, progress=False)
    VINNPolicy.fit(data.frames, data.actions, data.episode_ids, encoder=Encoder(bench.encoder_config()), k=2,
                   gripper_index=-1).save(tmp_path / "run" / "policies" / "training0" / "vinn")
    result = script.main(script.Args(task="door", smoke=True, run_dir=str(tmp_path / "run"), data_dir=str(tmp_path / "data"), out=str(tmp_path),
                                     crop_scales=(1.0,), byol_epochs=(2,), cache_dir=str(tmp_path / "cache"), name="door_extra"))
    assert [r["trunk"] for r in result["rows"]] == (["VINN's BYOL"] * 6 + ["untrained (seed 0)"] * 6 + ["BYOL, crop area (1, 1)"] * 6
                                                    + ["BYOL, 2 epochs"] * 6)
    assert result["missing"] == ["bc", "bc_paper"] and len(list((tmp_path / "cache").glob("byol-*/encoder"))) == 2
    paper = result["rows"][0]
    assert paper["key"] == "global average (the paper's)" and paper["dim"] == 512 and paper["mse"] >= 0
    assert {r["dim"] for r in result["rows"] if "keypoints" in r["key"]} == {512, 1024}  # 2 coordinates per channel
    assert "Not in" in (tmp_path / "door_extra.md").read_text() and not (tmp_path / "door.md").exists()
    assert [len(v) for v in result["byol_losses"].values()] == [1, 2]  # each extra BYOL's loss per epoch (smoke: 1 epoch)


def test_stack_analysis_can_skip_the_closed_loop_parts(tmp_path):
    script = load_script("stack_analysis")
    data = script.main(script.Args(smoke=True, k=2, episodes=0, oracle_demos=(), out=str(tmp_path), data_dir=str(tmp_path / "data"),
                                   cache_dir=str(tmp_path / "cache")))
    assert len(data["representations"]) == 6 and "closed_loop" not in data and not data.get("state_oracle")
