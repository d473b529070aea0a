"""Search backends: every index answers like exact search (ivf up to its measured recall), float16 storage."""

import gc

import numpy as np
import pytest
import torch

from vinn_policy import EmbeddingDatabase, Encoder, EncoderConfig, VINNPolicy
from vinn_policy import search as search_module
from vinn_policy.lwr import knn, nearest_rows, squared_norms
from vinn_policy.search import HalfScan, SearchIndex


def trajectories(episodes: int = 60, frames: int = 50, dim: int = 64, seed: int = 0) -> np.ndarray:
    """Smooth random walks on a low-dimensional manifold, as demonstration embeddings are."""
    rng = np.random.default_rng(seed)
    latent = np.cumsum(rng.standard_normal((episodes, frames, 8)) * 0.3, axis=1) + rng.standard_normal((episodes, 1, 8)) * 3
    lift = rng.standard_normal((8, dim))
    x = latent.reshape(-1, 8) @ lift + 0.05 * rng.standard_normal((episodes * frames, dim))
    return x.astype(np.float32)


def recall(found: torch.Tensor, truth: torch.Tensor) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth, strict=True)]))


@pytest.mark.parametrize("kind", ["exact", "flat", "ivf"])
def test_every_index_finds_the_exact_neighbours(kind):
    keys = torch.from_numpy(trajectories())
    queries = torch.from_numpy(trajectories(episodes=4, seed=1))
    true_d, true_i = knn(queries, keys, 10)
    index = SearchIndex(keys, kind, episode_ids=np.arange(len(keys)) // 50)
    d, i = index.search(queries, 10)
    assert recall(i, true_i) >= (0.95 if kind == "ivf" else 1.0)
    if kind == "ivf":  # nprobe was tuned to the target recall, visiting only some of the sqrt(N) cells
        assert 1 <= index.nprobe < index._faiss_index.nlist
    if kind != "ivf":
        torch.testing.assert_close(d, true_d, rtol=0, atol=1e-5)
    # distances are always re-measured exactly, whatever proposed the rows
    torch.testing.assert_close(d, (queries[:, None] - keys[i]).norm(dim=-1), rtol=0, atol=1e-5)


def test_ivf_visiting_every_cell_is_exact():
    keys = torch.from_numpy(trajectories())
    queries = torch.from_numpy(trajectories(episodes=2, seed=3))
    index = SearchIndex(keys, "ivf", nprobe=10_000)
    assert index.nprobe == index._faiss_index.nlist  # nprobe is capped at nlist
    assert torch.equal(index.search(queries, 5)[1], knn(queries, keys, 5)[1])


def test_ivf_with_fewer_rows_than_k_in_the_visited_cells_still_returns_k():
    keys = torch.from_numpy(trajectories(episodes=30, frames=30))
    index = SearchIndex(keys, "ivf", nprobe=1)
    d, i = index.search(keys[:5] + 100.0, 200)  # far away: one cell cannot hold 200 rows
    assert (i >= 0).all() and i.shape == (5, 200)


def test_ivf_over_a_single_long_demonstration_tunes_among_its_own_frames():
    keys = torch.from_numpy(trajectories(episodes=1, frames=2000))  # one episode: no other to search among
    queries = torch.from_numpy(trajectories(episodes=2, frames=20, seed=4))
    index = SearchIndex(keys, "ivf", episode_ids=np.zeros(len(keys), np.int64))
    assert recall(index.search(queries, 10)[1], knn(queries, keys, 10)[1]) >= 0.9


def test_auto_switches_to_ivf_at_the_documented_size(monkeypatch):
    keys = torch.from_numpy(trajectories())
    assert SearchIndex(keys, "auto").kind == "exact"
    monkeypatch.setattr(search_module, "AUTO_IVF_FRAMES", len(keys))
    assert SearchIndex(keys, "auto").kind == "ivf"


def test_unknown_index_and_storage_are_refused():
    emb, act, ep = trajectories(2, 5), np.zeros((10, 2), np.float32), np.repeat([0, 1], 5)
    with pytest.raises(ValueError, match=r"index must be one of \('auto', 'exact', 'flat', 'ivf'\); got 'hnsw'"):
        EmbeddingDatabase(emb, act, ep, index="hnsw")
    with pytest.raises(ValueError, match="storage must be one of"):
        EmbeddingDatabase(emb, act, ep, storage="int8")
    with pytest.raises(ValueError, match="float16's range"):
        EmbeddingDatabase(emb * 1e6, act, ep, storage="float16")


def test_float16_storage_halves_memory_and_barely_moves_actions(tmp_path):
    emb = trajectories()
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (len(emb), 3)).astype(np.float32)
    episodes = np.repeat(np.arange(60), 50)
    full = EmbeddingDatabase(emb, actions, episodes)
    half = EmbeddingDatabase(emb, actions, episodes, storage="float16")
    assert half.embeddings.dtype == torch.float16 and half.embeddings.nbytes * 2 == full.embeddings.nbytes
    queries = trajectories(episodes=4, seed=1)
    a, b = full.query(queries, 10), half.query(queries, 10)
    assert recall(torch.from_numpy(b.indices), torch.from_numpy(a.indices)) >= 0.95
    # rounding moves the blend ~1e-4; a swapped last neighbour (the recall above) moves that query's action more
    assert np.median(np.abs(a.actions - b.actions)) < 1e-3
    # a float16 policy saves float16 and loads back as float16 with the same actions
    encoder = Encoder(EncoderConfig(arch="resnet18", image_size=32))
    frames = rng.integers(0, 255, (40, 32, 32, 3), dtype=np.uint8)
    policy = VINNPolicy.fit(frames, actions[:40], np.repeat([0, 1], 20), encoder=encoder, k=3, storage="float16", index="flat")
    loaded = VINNPolicy.load(policy.save(tmp_path / "p"))
    assert loaded.database.storage == "float16" and loaded.config.index == "flat"
    np.testing.assert_array_equal(loaded.act(frames[0]), policy.act(frames[0]))


def test_policy_config_must_match_its_database():
    db = EmbeddingDatabase(trajectories(2, 5, dim=512), np.zeros((10, 2), np.float32), np.repeat([0, 1], 5), storage="float16")
    encoder = Encoder(EncoderConfig(arch="resnet18", image_size=32))
    assert VINNPolicy(encoder, db).config.storage == "float16"
    from vinn_policy import VINNConfig

    with pytest.raises(ValueError, match="must match the database"):
        VINNPolicy(encoder, db, VINNConfig())


@pytest.mark.parametrize("batch", [1, 7])
def test_float16_exact_search_scans_the_stored_halves_once_in_row_ranges(batch):
    keys = trajectories()
    queries = torch.from_numpy(trajectories(episodes=1, seed=1)[:batch])
    db = EmbeddingDatabase(keys, np.zeros((len(keys), 2), np.float32), np.arange(len(keys)) // 50, index="exact", storage="float16")
    d, i = db.search(queries, 10)
    true_d, true_i = knn(queries, torch.from_numpy(keys).half(), 10)
    assert torch.equal(i, true_i) and torch.allclose(d, true_d, atol=1e-5)
    scan = db.index.half_scan
    assert db.embeddings.data_ptr() == int(scan.index.codes.data())  # one copy of the rows: the scan's buffer
    for threads in (1, 3):  # any split into row ranges finds the same rows
        assert torch.equal(HalfScan(db.embeddings, threads).search(queries, 10), i)
    rows = db.embeddings
    del db, scan
    gc.collect()
    assert torch.equal(rows.float(), torch.from_numpy(keys).half().float())  # the view keeps its buffer alive


@pytest.mark.parametrize("transposed", [False, True])
def test_one_query_and_a_batch_rank_rows_as_brute_force_does_in_either_layout(transposed):
    keys, q = torch.from_numpy(trajectories()), torch.from_numpy(trajectories(episodes=1, seed=1)[:3])
    stored = keys.T.contiguous().T if transposed else keys  # how SearchIndex keeps float32 rows for exact search
    true = torch.cdist(q, keys).argsort(dim=1)[:, :7].sort(dim=1).values.numpy()
    sq = squared_norms(keys).numpy()
    for rows in (q[:1], q):
        found = nearest_rows(rows.numpy(), stored.numpy(), sq, 7)
        np.testing.assert_array_equal(np.sort(found, axis=1), true[: len(rows)])


def test_exact_float32_search_keeps_one_transposed_copy_and_saves_rows(tmp_path):
    keys = trajectories()
    db = EmbeddingDatabase(keys, np.zeros((len(keys), 2), np.float32), np.arange(len(keys)) // 50, index="exact")
    db.search(keys[:1], 3)
    assert db.embeddings.T.is_contiguous() and torch.equal(db.embeddings, torch.from_numpy(keys))
    assert db.index.embeddings is db.embeddings
    assert db.tensors()["db.embeddings"].is_contiguous()  # safetensors needs it


def test_ivf_has_four_sqrt_n_cells_and_scans_one_querys_cells_in_parallel():
    keys = torch.from_numpy(trajectories(episodes=400))  # 20k rows
    index = SearchIndex(keys, "ivf", episode_ids=np.arange(len(keys)) // 50)
    nlist = index._faiss_index.nlist
    assert nlist == min(int(4 * np.sqrt(len(keys))), len(keys) // 40) and nlist > 3 * np.sqrt(len(keys))
    assert index._faiss_index.parallel_mode == 1
