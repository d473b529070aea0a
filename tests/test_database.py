"""The embedding database: storage, validation, blending and the gripper vote."""

import numpy as np
import pytest
import torch

from vinn_policy.database import EmbeddingDatabase


def line_db(gripper_index=None):
    """Five frames on a line, embedding x at position x; action = [x, -x, grip]."""
    emb = np.arange(5, dtype=np.float32)[:, None] * np.array([[1.0, 0.0]], np.float32)  # (5, 2)
    grip = np.array([-1, -1, 1, 1, 1], np.float32)
    act = np.stack([emb[:, 0], -emb[:, 0], grip], 1)
    return EmbeddingDatabase(emb, act, episode_ids=[0, 0, 0, 1, 1], gripper_index=gripper_index)


def test_frame_indices_derived_per_episode():
    assert line_db().frame_indices.tolist() == [0, 1, 2, 0, 1]


def test_query_blends_translation_and_returns_neighbours():
    db = line_db()
    res = db.query(np.array([[1.0, 0.0]], np.float32), k=3)
    assert res.indices[0, 0] == 1 and set(res.indices[0].tolist()) <= {0, 1, 2}
    np.testing.assert_allclose(res.distances[0], [0.0, 1.0, 1.0], atol=1e-3)
    w = res.weights[0]
    np.testing.assert_allclose(res.actions[0, 0], (w * db.actions[res.indices[0], 0].numpy()).sum(), rtol=1e-5)
    assert res.actions.dtype == np.float32 and res.actions.shape == (1, 3)


def test_gripper_weighted_vote_is_crisp():
    db = line_db(gripper_index=-1)
    assert db.gripper_index == 2
    # Near x=1.6: neighbours 2 (closed), 1 (open), 3 (closed) -> closed wins, output exactly +1.
    near_closed = db.query(np.array([[1.6, 0.0]], np.float32), k=3)
    assert near_closed.actions[0, 2] == 1.0
    near_open = db.query(np.array([[0.4, 0.0]], np.float32), k=3)
    assert near_open.actions[0, 2] == -1.0
    # Without the vote the same query blends to a fractional, half-closed command.
    assert -1.0 < line_db().query(np.array([[1.6, 0.0]], np.float32), k=3).actions[0, 2] < 1.0


def test_the_gripper_vote_is_weighted_not_a_majority_nor_blend_then_threshold():
    # Gripper labels -1 (open) .. +1 (closed), one intermediate label -0.1 (still on the open side of the midpoint 0).
    grip = np.array([1.0, -1.0, -1.0, -0.1, -0.1], np.float32)
    db = EmbeddingDatabase(np.zeros((5, 1)), np.stack([np.zeros(5), grip], 1), np.arange(5), gripper_index=1)
    w = torch.tensor([[0.6, 0.2, 0.2]])
    # One heavy closed neighbour against two light open ones: majority says open, the weighted vote closed.
    majority_closed = (grip[[0, 1, 2]] > 0).sum() > 1.5
    assert not majority_closed and db.combine(w, torch.tensor([[0, 1, 2]]))[0, 1] == 1.0
    # 0.4 closed weight against 0.6 of barely-open labels: blend-then-threshold says closed (0.4 - 0.06 > 0),
    # the weighted vote open.
    w = torch.tensor([[0.4, 0.3, 0.3]])
    blended = float((w[0].numpy() * grip[[0, 3, 4]]).sum())
    assert blended > 0 and db.combine(w, torch.tensor([[0, 3, 4]]))[0, 1] == -1.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(embeddings=np.zeros((0, 2)), actions=np.zeros((0, 3)), episode_ids=np.zeros(0)), "empty"),
        (dict(embeddings=np.zeros((3, 2)), actions=np.zeros((2, 3)), episode_ids=np.zeros(3)), "same length"),
        (dict(embeddings=np.full((2, 2), np.nan), actions=np.zeros((2, 3)), episode_ids=np.zeros(2)), "NaN"),
        (dict(embeddings=np.zeros((2, 2)), actions=np.array([[0, np.inf, 0]] * 2), episode_ids=np.zeros(2)), "NaN or inf"),
        (dict(embeddings=np.zeros(2), actions=np.zeros((2, 3)), episode_ids=np.zeros(2)), "2 dimensions"),
        (dict(embeddings=np.zeros((2, 2)), actions=np.zeros((2, 3)), episode_ids=np.zeros(2), gripper_index=3), "gripper_index"),
    ],
)
def test_bad_database_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EmbeddingDatabase(**kwargs)


def test_bad_query_input():
    db = line_db()
    with pytest.raises(ValueError, match=r"shape \(B, 2\)"):
        db.query(np.zeros((1, 3), np.float32), k=1)
    with pytest.raises(ValueError, match="NaN"):
        db.query(np.array([[np.nan, 0]], np.float32), k=1)
    with pytest.raises(ValueError, match="k .* must be an integer >= 1"):
        db.query(np.zeros((1, 2), np.float32), k=0)


@pytest.mark.parametrize("ids", [[0, 0.7, 1], [0, np.nan, 1], [True, False, True]])
def test_episode_ids_that_are_not_integers_are_refused_not_truncated(ids):
    # int(0.7) == 0 would silently merge two demonstrations into one episode
    with pytest.raises(ValueError, match="episode_ids (must be|contains NaN)"):
        EmbeddingDatabase(np.zeros((3, 2)), np.zeros((3, 3)), ids)
    with pytest.raises(ValueError, match="episode_ids (must be|contains NaN)"):
        line_db().without_episodes(ids)
    assert EmbeddingDatabase(np.zeros((3, 2)), np.zeros((3, 3)), [0.0, 1.0, 1.0]).episode_ids.tolist() == [0, 1, 1]


def test_boolean_embeddings_are_refused():
    with pytest.raises(ValueError, match="embeddings must be numeric"):
        EmbeddingDatabase(np.ones((3, 2), bool), np.zeros((3, 3)), [0, 1, 2])


@pytest.mark.parametrize("index", ["exact", "flat", "ivf"])
@pytest.mark.parametrize("k", [0, -1, True])
def test_k_below_one_is_a_value_error_on_every_backend(index, k):
    db = EmbeddingDatabase(np.random.default_rng(0).normal(size=(100, 4)), np.zeros((100, 3)), np.arange(100) // 10, index=index)
    with pytest.raises(ValueError, match="k .* must be an integer >= 1"):
        db.search(np.zeros((1, 4), np.float32), k)
    with pytest.raises(ValueError, match="k .* must be an integer >= 1"):
        db.leave_one_episode_out(k)
