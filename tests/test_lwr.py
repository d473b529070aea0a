"""kNN search and the softmin blend against worked examples and brute-force references."""

import numpy as np
import pytest
import torch

from vinn_policy.lwr import knn, softmin_blend, softmin_weights

# The worked example in docs/method.md (locally weighted regression), from Pari et al. 2022 (k = 3).
DISTANCES = torch.tensor([0.5, 0.8, 1.2])
ACTIONS = torch.tensor([[0.10, 0.0, -0.05], [0.12, 0.02, -0.03], [0.08, -0.01, -0.06]])


def test_worked_example():
    np.testing.assert_allclose(softmin_weights(DISTANCES).numpy(), [0.447, 0.331, 0.222], atol=5e-4)
    np.testing.assert_allclose(softmin_blend(DISTANCES, ACTIONS).numpy(), [0.1022, 0.0044, -0.0456], atol=5e-5)


def test_weights_sum_to_one_and_favour_the_closest():
    d = torch.rand(7, 5) * 10
    w = softmin_weights(d, temperature=0.7)
    torch.testing.assert_close(w.sum(1), torch.ones(7))
    assert torch.equal(w.argmax(1), d.argmin(1))


def test_temperature_limits():
    a = torch.randn(3, 4)
    assert torch.allclose(softmin_blend(DISTANCES, a, temperature=1e-6), a[0])  # nearest neighbour
    assert torch.allclose(softmin_blend(DISTANCES, a, temperature=1e6), a.mean(0), atol=1e-5)  # plain mean


def test_blend_is_stable_for_huge_distances():
    out = softmin_blend(DISTANCES + 1e4, ACTIONS)  # exp(-1e4) underflows without the min shift
    np.testing.assert_allclose(out.numpy(), [0.1022, 0.0044, -0.0456], atol=5e-5)


def test_batched_blend_matches_rows():
    d, a = torch.rand(4, 6), torch.randn(4, 6, 2)
    out = softmin_blend(d, a, temperature=0.5)
    for i in range(4):
        torch.testing.assert_close(out[i], softmin_blend(d[i], a[i], temperature=0.5))


@pytest.mark.parametrize("k", [1, 5, 37])
def test_knn_matches_brute_force(k):
    g = torch.Generator().manual_seed(k)
    keys, query = torch.randn(200, 16, generator=g), torch.randn(9, 16, generator=g)
    dist, idx = knn(query, keys, k)
    ref = torch.cdist(query.double(), keys.double())  # (B, N)
    ref_d, ref_i = ref.sort(dim=1)
    assert dist.shape == idx.shape == (9, k)
    assert torch.equal(idx, ref_i[:, :k])
    np.testing.assert_allclose(dist.numpy(), ref_d[:, :k].numpy(), rtol=1e-4, atol=1e-4)
    assert (dist[:, 1:] >= dist[:, :-1]).all()


def test_knn_clamps_k_to_database_size():
    dist, idx = knn(torch.zeros(2, 3), torch.randn(4, 3), k=10)
    assert dist.shape == (2, 4) and sorted(idx[0].tolist()) == [0, 1, 2, 3]


def test_knn_exact_match_has_zero_distance():
    keys = torch.randn(50, 8, generator=torch.Generator().manual_seed(0)) * 10  # large norms: worst case for cancellation
    dist, idx = knn(keys[[7, 21]], keys, 1)
    assert idx.flatten().tolist() == [7, 21] and torch.allclose(dist, torch.zeros_like(dist), atol=1e-6)


@pytest.mark.parametrize(
    "args, match",
    [
        ((torch.zeros(1, 3), torch.zeros(4, 3), 0), "k .* must be an integer >= 1"),
        ((torch.zeros(1, 3), torch.zeros(0, 3), 1), "empty database"),
        ((torch.zeros(1, 2), torch.zeros(4, 3), 1), "same D"),
    ],
)
def test_knn_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        knn(*args)


def test_non_positive_temperature_rejected():
    with pytest.raises(ValueError, match="temperature"):
        softmin_weights(DISTANCES, temperature=0.0)


def test_the_method_functions_take_numpy_and_return_numpy():
    # The worked example (docs/method.md), as a new user types it: numpy arrays (and plain lists) in, numpy out.
    d, a = DISTANCES.numpy(), ACTIONS.numpy()
    out = softmin_blend(d, a)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, [0.1022, 0.0044, -0.0456], atol=5e-5)
    np.testing.assert_allclose(softmin_blend(d.tolist(), a.tolist()), out, atol=1e-7)
    assert isinstance(softmin_weights(d), np.ndarray)
    keys = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    dist, idx = knn(keys[:3] + 0.01, keys, 2)
    assert isinstance(dist, np.ndarray) and isinstance(idx, np.ndarray)
    np.testing.assert_array_equal(idx[:, 0], [0, 1, 2])
    t_dist, t_idx = knn(torch.from_numpy(keys[:3] + 0.01), torch.from_numpy(keys), 2)  # torch in, torch out
    assert isinstance(t_dist, torch.Tensor) and torch.equal(t_idx, torch.from_numpy(idx))
