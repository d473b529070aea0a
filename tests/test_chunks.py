"""Chunked retrieval (VINNConfig.chunk): each query plans its neighbours' next actions and runs them open-loop."""

import numpy as np
import pytest

from vinn_policy import EmbeddingDatabase, VINNConfig, VINNPolicy

LENGTH = 6  # frames per demonstration in make_episodes()


def test_successors_follow_each_rows_demonstration_and_stop_where_it_ends():
    episode_ids = np.array([1, 0, 1, 0, 0, 1])  # rows in no particular order
    frame_indices = np.array([1, 2, 0, 0, 1, 2])
    db = EmbeddingDatabase(np.zeros((6, 2), np.float32), np.zeros((6, 1), np.float32), episode_ids, frame_indices)
    np.testing.assert_array_equal(db.successors(np.array([3, 2, 0]), 3), [[3, 4, 1], [2, 0, 5], [0, 5, -1]])
    gap = EmbeddingDatabase(np.zeros((3, 2), np.float32), np.zeros((3, 1), np.float32), np.zeros(3), np.array([0, 1, 3]))
    np.testing.assert_array_equal(gap.successors(np.array([0]), 3), [[0, 1, -1]])  # a skipped frame ends the run


def test_one_neighbour_replays_its_demonstrations_next_actions_then_queries_again(episodes, tiny_encoder):
    frames, actions, eps = episodes
    policy = VINNPolicy.fit(frames, actions, eps, encoder=tiny_encoder, k=1, gripper_index=3)
    policy.config = VINNConfig(k=1, gripper_index=3, chunk=3)
    policy.reset()
    done = [policy.act(frames[7]) for _ in range(4)]  # the same image every step: only a new query can see it
    np.testing.assert_array_equal(np.stack(done), actions[[7, 8, 9, 7]])
    assert policy.last_neighbours.indices[0, 0] == 7 and policy.plan.step[0] == 0


def test_a_plan_is_cut_where_its_demonstration_ends(episodes, tiny_encoder):
    frames, actions, eps = episodes
    policy = VINNPolicy(tiny_encoder, VINNPolicy.fit(frames, actions, eps, encoder=tiny_encoder, k=1, gripper_index=3).database,
                        VINNConfig(k=1, gripper_index=3, chunk=4))
    last = LENGTH - 1  # episode 0's last frame
    done = [policy.act(frames[last - 1]) for _ in range(3)]
    np.testing.assert_array_equal(np.stack(done), actions[[last - 1, last, last - 1]])  # 2 steps left, then a new query


def test_blended_steps_renormalise_over_the_neighbours_still_running(episodes, tiny_encoder):
    frames, actions, eps = episodes
    base = VINNPolicy.fit(frames, actions, eps, encoder=tiny_encoder, k=2, gripper_index=3)
    policy = VINNPolicy(tiny_encoder, base.database, VINNConfig(k=2, gripper_index=3, chunk=LENGTH))
    first = policy.act(frames[LENGTH - 2])
    np.testing.assert_allclose(first, base.act(frames[LENGTH - 2]), rtol=1e-6)  # step 0 is the paper's VINN
    plan = policy.plan
    rows, weights = plan.rows[0], plan.weights[0]  # (k, H)
    for step in range(plan.length[0]):
        running = rows[:, step] >= 0
        assert weights[running, step].sum() == pytest.approx(1.0) and np.all(weights[~running, step] == 0)
        np.testing.assert_allclose(plan.actions[0, step, :3], (weights[running, step, None] * actions[rows[running, step], :3]).sum(0), rtol=1e-5)


def test_requery_starts_a_new_plan_when_the_scene_leaves_the_expected_frames(episodes, tiny_encoder):
    frames, actions, eps = episodes
    base = VINNPolicy.fit(frames, actions, eps, encoder=tiny_encoder, k=1, gripper_index=3)
    patient = VINNPolicy(tiny_encoder, base.database, VINNConfig(k=1, gripper_index=3, chunk=4))
    watchful = VINNPolicy(tiny_encoder, base.database, VINNConfig(k=1, gripper_index=3, chunk=4, requery=0.5))
    elsewhere = 3 * LENGTH + 2  # episode 3, frame 2: far from episode 0's frame 1
    for policy in (patient, watchful):
        policy.act(frames[0])
    np.testing.assert_array_equal(patient.act(frames[elsewhere]), actions[1])  # open-loop: the plan goes on
    np.testing.assert_array_equal(watchful.act(frames[elsewhere]), actions[elsewhere])  # drifted: a new query
    assert watchful.drift(tiny_encoder.embed(frames[elsewhere + 1]))[0] < 0.5  # following the new plan: no drift


def test_batched_plans_query_again_one_by_one(episodes, tiny_encoder):
    frames, actions, eps = episodes
    policy = VINNPolicy(tiny_encoder, VINNPolicy.fit(frames, actions, eps, encoder=tiny_encoder, k=1, gripper_index=3).database,
                        VINNConfig(k=1, gripper_index=3, chunk=3))
    batch = frames[[LENGTH - 2, LENGTH + 1]]  # episode 0 (2 steps left), episode 1 frame 1
    done = np.stack([policy.act_batch(batch) for _ in range(3)])  # (steps, B, A)
    np.testing.assert_array_equal(done[:, 0], actions[[LENGTH - 2, LENGTH - 1, LENGTH - 2]])
    np.testing.assert_array_equal(done[:, 1], actions[[LENGTH + 1, LENGTH + 2, LENGTH + 3]])


def test_chunk_options_are_saved_and_bad_ones_refused(tmp_path, episodes, tiny_encoder):
    frames, actions, eps = episodes
    base = VINNPolicy.fit(frames, actions, eps, encoder=tiny_encoder, k=2, gripper_index=3)
    policy = VINNPolicy(tiny_encoder, base.database, VINNConfig(k=2, gripper_index=3, chunk=5, requery=1.5))
    assert VINNPolicy.load(policy.save(tmp_path / "p")).config == policy.config
    for bad, match in (({"chunk": 0}, "chunk must be an integer >= 1"), ({"chunk": 2, "requery": -1.0}, "requery must be None"),
                       ({"chunk": 2, "mode_selection": "dominant"}, "cannot be combined with chunk"),
                       ({"chunk": 2, "requery": True}, "requery must be None"), ({"requery": 2.0}, "requery=2.0 needs chunk > 1")):
        with pytest.raises(ValueError, match=match):
            VINNConfig(**bad)


def test_the_benchmark_fits_vinn_chunk_on_vinns_encoder_and_k_and_traces_its_plan_step(tmp_path, episodes, tiny_encoder):
    from vinn_policy.demos.dataset import Demos

    from vinn_policy.harness.args import BenchmarkArgs
    from vinn_policy.harness.evaluation import step_trace
    from vinn_policy.harness.training import train_policies
    from vinn_policy.harness.video import NeighbourStrip

    frames, actions, eps = episodes
    data = Demos(frames, actions, eps, np.tile(np.arange(LENGTH), 4), "image", {}, list(range(4)))
    args = BenchmarkArgs(task="door", demos=3, methods=("vinn", "vinn_chunk"), chunk=3, requery=2.0)
    info = train_policies(args, data, 3, tiny_encoder, tmp_path)
    chunked = VINNPolicy.load(info["paths"]["vinn_chunk"])
    assert (chunked.config.chunk, chunked.config.requery, chunked.config.k) == (3, 2.0, info["k_by_method"]["vinn"])
    chunked.reset()
    steps = []
    for t in range(2):
        chunked.act(frames[t])
        steps.append(step_trace(chunked)["plan_step"])
    assert steps[0] == 0 and steps[1] in (0, 1)  # 1 unless the drift asked for a new query
    chunked.reset()
    chunked.act(frames[1])
    trace = step_trace(chunked, provenance=True)
    chunked.act(frames[1])
    later = step_trace(chunked, provenance=True)
    assert later["plan_step"] == 1 and later["neighbours"] == trace["neighbours"]  # the query behind the plan
    assert [(s["episode"], s["frame"]) for s in trace["plan_sources"]] == [(n["episode"], n["frame"]) for n in trace["neighbours"]]
    followed = {(s["episode"], s["frame"] + 1) for s in trace["plan_sources"]}
    assert later["plan_sources"] and {(s["episode"], s["frame"]) for s in later["plan_sources"]} <= followed  # one frame on
    assert sum(s["weight"] for s in later["plan_sources"]) == pytest.approx(1.0)
    annotate = NeighbourStrip(frames[eps < 3], height=64, rows=1)
    strip = annotate({"image": frames[1]}, chunked)
    assert strip is not None and strip.shape[0] == 64
    chunked.plan.rows[0, 1:] = -1  # every neighbour's demonstration but the first has ended: the video keeps its size
    assert annotate({"image": frames[1]}, chunked).shape == strip.shape


def test_changing_the_database_drops_a_plan_made_on_the_old_one(episodes, tiny_encoder):
    frames, actions, eps = episodes
    base = VINNPolicy.fit(frames, actions, eps, encoder=tiny_encoder, k=1, gripper_index=3)
    policy = VINNPolicy(tiny_encoder, base.database, VINNConfig(k=1, gripper_index=3, chunk=4, requery=100.0))
    policy.act(frames[2 * LENGTH + 1])  # a plan from episode 2
    policy.remove_episodes([0, 1])  # its rows now number other frames (and episode 2's rows shifted down)
    np.testing.assert_array_equal(policy.act(frames[2 * LENGTH + 1]), actions[2 * LENGTH + 1])  # a new query, not a stale row
    assert policy.plan.step[0] == 0
    policy.remove_episodes([2])
    assert policy.plan is None  # nothing of the removed demonstration is replayed
    policy.act(frames[3 * LENGTH])
    policy.add_demos(frames[eps < 2], actions[eps < 2], eps[eps < 2])
    assert policy.plan is None


def test_offline_error_of_a_chunked_vinn_is_its_plans(episodes, tiny_encoder):
    from vinn_policy.harness.offline import predict_frames

    frames, actions, eps = episodes
    base = VINNPolicy.fit(frames, actions, eps, encoder=tiny_encoder, k=1, gripper_index=3)
    chunked = VINNPolicy(tiny_encoder, base.database, VINNConfig(k=1, gripper_index=3, chunk=3))
    still = np.repeat(frames[[1]], 4, axis=0)  # a validation episode that never moves: only the plan changes the action
    np.testing.assert_array_equal(predict_frames(base, still, np.zeros(4)), actions[[1, 1, 1, 1]])
    np.testing.assert_array_equal(predict_frames(chunked, still, np.zeros(4)), actions[[1, 2, 3, 1]])  # planned, then a new query
