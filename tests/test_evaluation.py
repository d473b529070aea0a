"""Closed-loop statistics (Wilson intervals, exact paired tests over seeds) and the run_<task> pipeline end to end."""

import dataclasses
import json

import imageio.v3 as iio
import numpy as np
import pytest

from vinn_policy.harness.evaluation import (
    design_effect,
    failure_auroc,
    paired_comparison,
    pooled_interval,
    summarize,
    wilson_interval,
)
from vinn_policy.harness.report import host_note, paired_table
from vinn_policy.policy import VINNPolicy

from .test_benchmarks import load_script


@pytest.mark.parametrize(
    "s, n, expected",
    [(8, 10, (0.4902, 0.9433)), (0, 10, (0.0, 0.2775)), (50, 50, (0.9287, 1.0)), (40, 50, (0.6696, 0.8876))],
)
def test_wilson_interval_known_values(s, n, expected):
    assert wilson_interval(s, n) == pytest.approx(expected, abs=1e-4)
    low, high = wilson_interval(s, n)
    assert low <= s / n <= high  # exactly, or a plot's error bar below a 0% rate goes negative


def test_wilson_interval_holds_its_rate_exactly_at_the_extremes_of_effective_counts():
    for n in (3.7, 50, 123.4):
        assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 1.0


def test_paired_comparison_counts_and_exact_mcnemar():
    a = {i: i < 8 for i in range(10)}  # succeeds on 0..7
    b = {i: i < 2 or i == 9 for i in range(10)}  # succeeds on 0, 1, 9
    p = paired_comparison(a, b)
    assert (p["both"], p["only_a"], p["only_b"], p["neither"]) == (2, 6, 1, 1)
    assert p["paired_p"] == pytest.approx(0.125)  # one training: exact McNemar, 1 of 7 discordant pairs
    assert paired_comparison(a, a)["paired_p"] == 1.0


def test_the_paired_test_over_trainings_counts_a_seed_once_not_once_per_training():
    # VINN wins the same 10 seeds in each of 3 trainings: 30 discordant episodes but 10 seeds of evidence
    a = {(t, s): s < 10 for t in range(3) for s in range(20)}
    b = {(t, s): False for t in range(3) for s in range(20)}
    p = paired_comparison(a, b)
    assert (p["episodes"], p["seeds"], p["only_a"]) == (60, 20, 30)
    assert p["paired_p"] == pytest.approx(2 * 0.5**10)  # a sign test on 10 seeds, not 2 * 0.5**30


def test_the_pooled_interval_counts_seeds_that_behave_alike_in_every_training_as_one_episode_each():
    one = {(0, s): s < 20 for s in range(50)}
    assert design_effect(one) == 1 and pooled_interval(one) == pytest.approx(wilson_interval(20, 50))
    same = {(t, s): s < 20 for t in range(3) for s in range(50)}  # every training identical: 50 seeds' worth
    assert design_effect(same) == pytest.approx(3) and pooled_interval(same) == pytest.approx(wilson_interval(20, 50))
    rng = np.random.default_rng(0)
    independent = {(t, s): bool(rng.random() < 0.4) for t in range(3) for s in range(50)}
    assert design_effect(independent) < 1.3  # no shared difficulty: close to 150 independent episodes
    assert wilson_interval(20.4, 50.3) == pytest.approx(wilson_interval(20, 50), abs=0.01)  # effective counts need not be whole


def test_failure_auroc():
    rows = [{"success": ok, "uncertainty_max": u} for ok, u in ((True, 1.0), (True, 2.0), (False, 3.0), (False, 1.5))]
    a = failure_auroc(rows)
    assert a["auroc"] == pytest.approx(0.75) and (a["failures"], a["successes"]) == (2, 2)  # 3 of 4 pairs ordered
    assert failure_auroc([r for r in rows if r["success"]])["auroc"] is None


def test_summary_of_several_trainings_pools_paired_episodes_and_gives_the_spread():
    vinn = {0: [1, 1, 0, 0], 1: [1, 1, 1, 0]}
    bc = {0: [0, 1, 0, 0], 1: [0, 0, 1, 0]}
    rows = [{"method": m, "training": t, "seed": s, "success": bool(ok), "steps": 10}
            for m, runs in (("vinn", vinn), ("bc", bc)) for t, oks in runs.items() for s, ok in enumerate(oks)]
    rows += [{"method": "random", "training": 0, "seed": s, "success": s == 0, "steps": 10} for s in range(4)]
    summary = summarize(rows)
    assert summary["methods"]["vinn"]["per_training"] == [0.5, 0.75] and summary["methods"]["vinn"]["mean"] == 0.625
    assert summary["methods"]["vinn"]["std"] == pytest.approx(np.std([0.5, 0.75], ddof=1))
    assert (summary["methods"]["vinn"]["successes"], summary["methods"]["vinn"]["episodes"]) == (5, 8)
    paired = summary["paired"]["bc"]  # episode by episode within each training
    assert (paired["episodes"], paired["seeds"], paired["both"], paired["only_a"], paired["only_b"]) == (8, 4, 2, 3, 0)
    rand = summary["paired"]["random"]  # evaluated once: seed 0's success pairs with both trainings' seed 0
    assert (rand["episodes"], rand["seeds"], rand["both"], rand["only_a"], rand["only_b"]) == (8, 4, 2, 3, 0)
    assert summary["methods"]["random"]["per_training"] == [0.25]


def test_summarize_rows():
    rows = [{"method": m, "seed": s, "success": ok, "steps": 10} for m, oks in (("vinn", [1, 1, 0]), ("bc", [0, 1, 0]))
            for s, ok in enumerate(oks)]
    summary = summarize(rows)
    assert summary["methods"]["vinn"]["successes"] == 2 and summary["methods"]["bc"]["episodes"] == 3
    assert summary["paired"]["bc"]["only_a"] == 1


def test_vinn_variants_are_paired_with_the_baselines_in_one_holm_family():
    outcomes = {"vinn": [1, 0, 0, 0, 0, 0], "vinn_plus": [1, 1, 1, 1, 1, 1], "vinn_chunk": [1, 1, 1, 0, 0, 0], "bc": [0] * 6, "random": [0] * 6}
    rows = [{"method": m, "seed": s, "success": bool(ok), "steps": 10} for m, oks in outcomes.items() for s, ok in enumerate(oks)]
    summary = summarize(rows, challengers=("vinn_plus", "vinn_chunk", "vinn_dominant"))
    assert set(summary["paired"]) == {"vinn_plus", "vinn_chunk", "bc", "random"}  # VINN's family as before
    by = summary["paired_by_challenger"]
    assert set(by) == {"vinn_plus", "vinn_chunk"} and set(by["vinn_plus"]) == {"bc", "random"}  # absent ones skipped
    plus_bc = by["vinn_plus"]["bc"]
    assert (plus_bc["only_a"], plus_bc["only_b"]) == (6, 0) and plus_bc["holm_p"] == pytest.approx(4 * plus_bc["paired_p"])
    assert plus_bc["verdict"] == "no significant difference"  # 6 discordant pairs: p = 0.031, x4 after Holm over 2 variants x 2 baselines
    assert "| Random | 0 | 6 | 0 | 0 | 0.0312 | 0.125 |" in paired_table(by["vinn_plus"], "vinn_plus")
    assert "VINN, chunked multi-view vs" in paired_table(by["vinn_plus"], "vinn_plus")
    assert "paired_by_challenger" not in summarize(rows)


def test_host_note_names_the_hosts_speed_and_is_empty_for_results_recorded_without_it():
    note = host_note({"host_speed": {"read_bandwidth_gb_per_s": 16.55, "resnet18_84px_forward_ms": 20.49}})
    assert note == " on a host with 16.6 GB/s memory reads and a 20.5 ms one-thread ResNet-18 forward pass (84 px)"
    assert host_note({"date": "2026-11-27 14:11:51"}) == ""  # committed results made before the probe existed


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("task", ["door", "push", "stack"])
def test_run_task_smoke_end_to_end_and_replay(tmp_path, task, monkeypatch):
    from vinn_policy.harness import benchmark

    script = load_script(f"run_{task}")
    encoder_frames, build = [], benchmark.build_encoder
    monkeypatch.setattr(benchmark, "build_encoder", lambda args, frames, *a: encoder_frames.append(len(frames)) or build(args, frames, *a))
    # sweeps and provenance are task-independent code: door covers them
    sweeps = {"demo_sweep": (2, 4), "k_sweep": (1,), "provenance": True} if task == "door" else {}
    trainings = 1 if task == "door" else 2  # several trainings are task-independent code: push covers them
    args = script.BenchmarkArgs(task=task, smoke=True, out=str(tmp_path / task), run_dir=str(tmp_path / "run"),
                                data_dir=str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), workers=2, train_seeds=trainings, **sweeps)
    results = script.main(args)
    saved = json.loads((tmp_path / task / "results.json").read_text())
    for key in ("args", "block", "environment", "summary", "episodes", "trainings", "act_latency_ms", "stage_seconds"):
        assert key in saved
    methods = set(saved["summary"]["methods"])
    assert methods == {"vinn", "vinn_random", "bc", "bc_paper", "bc_rep", "open_loop", "random"}
    assert len(saved["trainings"]) == trainings and {"k", "offline", "bc_training", "policies"} <= set(saved["trainings"][-1])
    seeds = {m: sorted(r["seed"] for r in saved["episodes"] if r["method"] == m and r["training"] == 0) for m in methods}
    assert len({tuple(s) for s in seeds.values()}) == 1 and len(seeds["vinn"]) == 4  # same seeds for all
    for m in methods:  # learned methods once per training, the rest once
        once = m in ("open_loop", "random")
        assert len(saved["summary"]["methods"][m]["per_training"]) == (1 if once else trainings)
        assert saved["summary"]["methods"][m]["episodes"] == 4 * (1 if once else trainings)
    paired_random = saved["summary"]["paired"]["random"]  # paired with every training of VINN, the seed the test's unit
    assert (paired_random["episodes"], paired_random["seeds"]) == (4 * trainings, 4)
    digests = [{m: p["sha256"] for m, p in t["policies"].items()} for t in saved["trainings"]]
    for later in digests[1:]:  # each training's seed reaches every learned method
        assert set(later) == methods - {"open_loop", "random"} and all(later[m] != digests[0][m] for m in later)
    assert min(seeds["vinn"]) >= 1_000_000  # disjoint from demonstration seeds
    report = (tmp_path / task / "report.md").read_text()
    assert "Wilson 95%" in report and "paired p (exact)" in report
    speed = saved["environment"]["host_speed"]  # wall times are only comparable with the machine's speed beside them
    assert speed["read_bandwidth_gb_per_s"] > 0.1 and 0 < speed["resnet18_84px_forward_ms"] < 1000
    assert f"{speed['resnet18_84px_forward_ms']:.1f} ms one-thread ResNet-18 forward pass" in report
    assert (tmp_path / task / "success.png").stat().st_size > 1000 and (tmp_path / task / "bc_training.png").exists()
    assert "converged" in report and "BC (robomimic)" in report
    assert len(results["videos"]) == len(methods) and all(v["reproduces_evaluation"] for v in results["videos"])
    for video in results["videos"]:  # every step's scene plus the last; VINN's with its neighbours beside it
        frames = iio.imread(video["file"])
        assert len(frames) == video["steps"] + 1
        assert frames.shape[1] == 256 and (frames.shape[2] > 256) == video["method"].startswith("vinn")

    if sweeps:
        demos = saved["sweeps"]["demos"]
        assert set(demos) == {"2", "4"} and set(demos["2"]["summary"]) == {"vinn", "bc_rep", "bc", "bc_paper"}
        assert "learns from the n demos alone" in report
        assert len(encoder_frames) == 2 and encoder_frames[1] < encoder_frames[0]  # the 2-demo sweep's own BYOL, on its 2 demos' frames
        assert demos["4"]["summary"]["vinn"] == saved["summary"]["methods"]["vinn"]  # the main run, not retrained
        assert saved["sweeps"]["k"]["1"]["episodes"] == 4
        assert (tmp_path / task / "demos.png").exists() and "number of demonstrations" in report
        vinn_row = next(r for r in saved["episodes"] if r["method"] == "vinn")
        assert len(vinn_row["uncertainty"]) == vinn_row["steps"] and "failure_auroc" in saved["summary"]["methods"]["vinn"]
        steps = json.loads(open(vinn_row["provenance_file"]).read())
        assert len(steps) == vinn_row["steps"] and {"episode", "frame", "distance", "weight", "action"} <= set(steps[0][0])
        assert "know when it will fail" in report
        table = load_script("closed_loop").main(load_script("closed_loop").Args(tasks=("door", "push"), results=str(tmp_path)))
        assert set(table) == {"door"} and (tmp_path / "closed_loop.md").exists() and (tmp_path / "closed_loop.png").exists()

    if trainings > 1:  # another machine (no caches, no policies) resumes from the report folder's records, training nothing
        monkeypatch.setattr(benchmark, "train_and_evaluate", lambda *a, **k: pytest.fail("trained a recorded training again"))
        script.main(dataclasses.replace(args, workers=1, cache_dir=str(tmp_path / "empty_cache")))
        again = json.loads((tmp_path / task / "results.json").read_text())
        assert again["episodes"] == saved["episodes"] and again["summary"] == saved["summary"]
        assert [t["run"]["reused"] for t in again["trainings"]] == [True] * trainings
        assert again["act_latency_ms"] == saved["act_latency_ms"] and again["diagnostics"] == saved["diagnostics"]
        assert "reused from this folder's `trainings/` records" in (tmp_path / task / "report.md").read_text()

    row = next(r for r in saved["episodes"] if r["method"] == "bc" and r["training"] == trainings - 1)
    replay_args = script.BenchmarkArgs(task=task, smoke=True, out=str(tmp_path / task), run_dir=str(tmp_path / "run"),
                                       replay=row["seed"], method="bc", training=trainings - 1)
    replayed = script.main(replay_args)
    assert replayed["reproduces"] and replayed["steps"] == row["steps"]


def test_bad_arguments_are_refused():
    script = load_script("run_door")
    with pytest.raises(ValueError, match="available"):
        script.BenchmarkArgs(methods=("vinn", "gail"))
    with pytest.raises(ValueError, match="imagenet-weights"):
        script.BenchmarkArgs(encoder="imagenet")
    with pytest.raises(ValueError, match="camera must be one of"):
        script.BenchmarkArgs(camera="wristcam")


def test_paper_preset_is_the_papers_scale_and_renders_what_its_encoder_sees():
    import tyro

    from vinn_policy.harness.benchmark import BenchmarkArgs

    cpu = BenchmarkArgs()
    # as run_<task>.py builds it: tyro fills the fields from a default instance made without --paper
    paper = tyro.cli(BenchmarkArgs, default=BenchmarkArgs(task="door"), args=["--paper"])
    assert (cpu.image_px, cpu.byol_config().encoder.arch) == (84, "resnet18")
    byol, bc, rep = paper.byol_config(), paper.bc_config("bc_paper"), paper.bc_config("bc_rep")
    assert paper.image_px == byol.encoder.image_size == bc.encoder.image_size == 224
    assert (byol.encoder.arch, byol.epochs, byol.batch_size) == ("resnet50", 100, 168)
    assert (bc.batch_size, rep.batch_size, bc.epochs, bc.gripper_index) == (64, 256, 100, -1)  # the last dimension
    assert BenchmarkArgs(paper=True, image_size=128).image_px == 128  # an explicit size still wins
    assert BenchmarkArgs(smoke=True).image_px == 32


def test_holm_adjusts_the_family_of_baseline_comparisons():
    from vinn_policy.harness.evaluation import holm

    # Holm: sorted p 0.01, 0.02, 0.04 -> x3, x2, x1 = 0.03, 0.04, 0.04 (made monotone)
    assert holm({"bc": 0.02, "bc_rep": 0.01, "random": 0.04}) == pytest.approx({"bc": 0.04, "bc_rep": 0.03, "random": 0.04})
    assert holm({"a": 0.6, "b": 0.9}) == {"a": 1.0, "b": 1.0}


def test_summary_says_no_significant_difference_not_level_when_holm_does_not_reject():
    a = {i: i < 30 for i in range(40)}  # VINN: 30/40
    close = {i: i < 27 for i in range(40)}  # 3 discordant pairs: p = 0.25
    far = {i: i < 5 for i in range(40)}  # 25 discordant pairs, all VINN's
    rows = [{"method": m, "seed": s, "success": ok, "steps": 10} for m, d in (("vinn", a), ("bc", close), ("random", far))
            for s, ok in d.items()]
    paired = summarize(rows)["paired"]
    assert paired["bc"]["verdict"] == "no significant difference" and paired["bc"]["holm_p"] >= paired["bc"]["paired_p"]
    assert paired["random"]["verdict"] == "reference better" and paired["random"]["holm_p"] == pytest.approx(2 * paired["random"]["paired_p"])


@pytest.mark.sim
@pytest.mark.slow
def test_vinn_variants_with_more_views_proprioception_and_chunks_run_end_to_end(tmp_path, monkeypatch):
    from vinn_policy.harness import benchmark, training

    encoder_frames, build = [], training.build_encoder
    for module in (benchmark, training):  # VINN's encoder (benchmark) and the further views' (training)
        monkeypatch.setattr(module, "build_encoder", lambda args, frames, *a: encoder_frames.append(frames[:1].copy()) or build(args, frames, *a))
    script = load_script("run_stack")
    args = script.BenchmarkArgs(task="stack", smoke=True, out=str(tmp_path / "stack"), run_dir=str(tmp_path / "run"), data_dir=str(tmp_path / "data"),
                                cache_dir=str(tmp_path / "cache"), workers=2, videos=1, chunk=3,
                                methods=("vinn", "vinn_multiview", "vinn_proprio", "vinn_plus", "vinn_bc_encoder"))
    assert args.extra_cameras == ("agentview",) and args.obs_keys == ("agentview_image", "robot0_eef_pos", "robot0_gripper_qpos")
    script.main(args)
    saved = json.loads((tmp_path / "stack" / "results.json").read_text())
    assert set(saved["summary"]["methods"]) == set(args.methods)
    record = saved["trainings"][0]
    assert record["views"] == {"cameras": ["robot0_eye_in_hand", "agentview"], "shared_encoder": False}
    assert record["proprio_weight"]["chosen"] in args.proprio_weights and len(record["proprio_weight"]["val_mse"]) == 4
    assert set(record["k_by_method"]) == set(args.methods) and set(record["offline"]) == set(args.methods)
    policies = {m: VINNPolicy.load(record["policies"][m]["path"]) for m in args.methods}
    assert policies["vinn_multiview"].layout.views == ("image", "agentview_image")
    assert policies["vinn_plus"].config.chunk == 3 and policies["vinn_plus"].layout == policies["vinn_multiview"].layout
    assert policies["vinn_proprio"].layout.proprio_keys == ("robot0_eef_pos", "robot0_gripper_qpos")
    assert policies["vinn_bc_encoder"].encoder.origin == "bc" and "bc" not in record["policies"]  # BC trained for its trunk only
    wrist, agent = policies["vinn_multiview"].encoders
    assert wrist.state_tensors()["encoder.conv1.weight"].equal(policies["vinn"].encoder.state_tensors()["encoder.conv1.weight"])
    assert not agent.state_tensors()["encoder.conv1.weight"].equal(wrist.state_tensors()["encoder.conv1.weight"])
    assert len(encoder_frames) == 2 and not np.array_equal(encoder_frames[0], encoder_frames[1])  # the agentview BYOL saw agentview frames
    assert (tmp_path / "data" / "stack-v1+agentview_32px.hdf5").exists()
    from vinn_policy.harness.benchmark import env_maker
    from vinn_policy.harness.evaluation import evaluation_key

    assert "extra_cameras" not in args.env_kwargs(method="vinn") and args.env_kwargs(method="vinn_plus")["extra_cameras"] == ("agentview",)
    for method in ("vinn", "vinn_plus"):  # each rolled out rendering only its cameras: vinn's rows are a single-camera run's
        assert (tmp_path / "cache" / f"eval-{evaluation_key(record['policies'][method]['path'], env_maker(args, method), args.eval_seeds())}.json").exists()
    variants = load_script("vinn_variants")  # chunks over the multi-view key, its extra camera rendered
    found = variants.main(variants.Args(task="stack", policy=record["policies"]["vinn_multiview"]["path"], name="stack_multiview",
                                        chunks=(1, 3), smoke=True, out=str(tmp_path / "variants")))
    assert list(found["summary"]["methods"]) == ["chunk 1", "chunk 3"]
    assert {m["episodes"] for m in found["summary"]["methods"].values()} == {4}  # --smoke's episodes
    assert "--policy" in (tmp_path / "variants" / "stack_multiview.md").read_text()


class CountingEnv:
    """Three steps per episode, success on even seeds: enough to roll a policy out without a simulator."""

    def __init__(self, steps: int = 3) -> None:
        self.steps, self.unwrapped = steps, self

    def reset(self, seed=None):
        self.seed, self.t = seed, 0
        return {"image": np.zeros((8, 8, 3), np.uint8)}, {"is_success": False}

    def step(self, action):
        self.t += 1
        done = self.t >= self.steps
        return {"image": np.zeros((8, 8, 3), np.uint8)}, 0.0, done, False, {"is_success": done and self.seed % 2 == 0}

    def close(self):
        pass


def make_counting_env(steps: int = 3) -> CountingEnv:
    return CountingEnv(steps)


def test_evaluation_rows_are_cached_per_policy_env_and_seeds_so_a_stopped_run_resumes(tmp_path, monkeypatch):
    import functools

    from vinn_policy.baselines import RandomPolicy
    from vinn_policy.harness import evaluation

    paths = {name: str(RandomPolicy(seed=i).save(tmp_path / name)) for i, name in enumerate(("a", "b"))}
    make = functools.partial(make_counting_env, steps=3)
    rolled, real = [], evaluation.run_jobs

    def run_jobs(make_env, jobs, workers, **kw):
        for job, episode in zip(jobs, real(make_env, jobs, 1, **kw), strict=True):
            if job[0] == "b" and stop_at_b:
                raise KeyboardInterrupt  # the session ends while b is being evaluated
            rolled.append(job[0])
            yield episode

    monkeypatch.setattr(evaluation, "run_jobs", run_jobs)
    stop_at_b, seeds = True, [0, 1, 2]
    with pytest.raises(KeyboardInterrupt):
        evaluation.evaluate_methods(make, paths, seeds, workers=1, progress=False, cache_dir=tmp_path / "cache")
    assert rolled == ["a"] * 3 and len(list((tmp_path / "cache").glob("eval-*.json"))) == 1  # a's rows were kept
    stop_at_b, rolled[:] = False, []
    rows = evaluation.evaluate_methods(make, paths, seeds, workers=1, progress=False, cache_dir=tmp_path / "cache")
    assert rolled == ["b"] * 3  # only what had no rows yet
    assert [(r["method"], r["seed"], r["success"]) for r in rows] == [(m, s, s % 2 == 0) for m in ("a", "b") for s in seeds]
    rolled[:] = []
    again = evaluation.evaluate_methods(make, {"renamed": paths["a"]}, seeds, workers=1, progress=False, cache_dir=tmp_path / "cache")
    assert rolled == [] and [r["method"] for r in again] == ["renamed"] * 3
    for changed in ({"make": functools.partial(make_counting_env, steps=4)}, {"seeds": [0, 1, 3]}):
        rolled[:] = []
        evaluation.evaluate_methods(changed.get("make", make), {"a": paths["a"]}, changed.get("seeds", seeds), workers=1,
                                    progress=False, cache_dir=tmp_path / "cache")
        assert rolled == ["a"] * 3  # another env or other seeds are another evaluation
    RandomPolicy(seed=9).save(tmp_path / "a")  # a retrained policy at the same path
    rolled[:] = []
    evaluation.evaluate_methods(make, {"a": paths["a"]}, seeds, workers=1, progress=False, cache_dir=tmp_path / "cache")
    assert rolled == ["a"] * 3
