"""Data-parallel BYOL under torchrun (2 CPU processes, gloo) computes what one process computes."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn
from vinn_policy.demos.dataset import load_demos, write_demos

from vinn_policy import Encoder, distributed
from vinn_policy.baselines.bc import BCPolicy
from vinn_policy.distributed import CpuSyncBatchNorm, convert_batchnorm, shard

from .test_demos import ENV_ARGS, fake_episode


def test_batchnorm_conversion_round_trip_keeps_statistics_and_frozen_parameters():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(5), nn.BatchNorm1d(5))
    net(torch.randn(6, 3, 8, 8))
    net[4].requires_grad_(False)
    synced = convert_batchnorm(net, to_sync=True)
    assert isinstance(synced[1], CpuSyncBatchNorm) and isinstance(synced[4], CpuSyncBatchNorm)
    assert not synced[4].weight.requires_grad and synced[1].weight.requires_grad
    x = torch.randn(6, 3, 8, 8)
    plain = convert_batchnorm(synced, to_sync=False)
    assert type(plain[1]) is nn.BatchNorm2d and type(plain[4]) is nn.BatchNorm1d
    torch.testing.assert_close(plain.eval()(x), net.eval()(x))  # without a process group it is plain BatchNorm


def test_shard_needs_an_even_split():
    assert shard(8, 1, 2) == slice(4, 8)
    with pytest.raises(ValueError, match=r"batch size \(9\) must divide evenly among the 2 processes"):
        shard(9, 0, 2)


@pytest.mark.parametrize("cuda, expected", [(True, "cuda:nccl,cpu:gloo"), (False, "gloo")])
def test_init_joins_a_group_that_reduces_cpu_tensors_too(monkeypatch, cuda, expected):
    """With GPUs, nccl alone cannot reduce the CPU loss scalars (mean_over_ranks): the group needs gloo for them."""
    calls = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: calls.setdefault("device", index))
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend: calls.setdefault("backend", backend))
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    assert distributed.init() == (1, 2)
    assert calls == ({"device": 1, "backend": expected} if cuda else {"backend": expected})


def run_both(tmp_path, args: list[str]) -> dict[str, str]:
    """stdout of `python <args> --out <dir>` in one process and under torchrun with two (gloo)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = {}
    for name, launcher in [("one", []), ("two", ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"])]:
        out = subprocess.run([sys.executable, *launcher, *args, "--out", str(tmp_path / name)], env=env, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        runs[name] = out.stdout
    assert "on 1 process(es)" in runs["one"] and "on 2 process(es)" in runs["two"]
    return runs


def losses(stdout: str) -> list[float]:
    return [float(x) for x in stdout.split("losses [")[1].split("]")[0].split(",")]


@pytest.mark.slow
def test_byol_under_torchrun_with_two_processes_matches_one_process(tmp_path):
    path = tmp_path / "demos.hdf5"
    write_demos(path, [fake_episode(s, steps=4) for s in range(2)], ENV_ARGS)  # 8 frames = one batch: a loss per step
    runs = run_both(tmp_path, ["-m", "vinn_policy.byol", "--demos", str(path), "--config.epochs", "2", "--config.batch-size", "8",
                               "--config.hidden-dim", "64", "--config.projection-dim", "32", "--config.encoder.image-size", "32"])
    # step 1: synchronised BatchNorm and identical views; step 2: gradients averaged over the shards.
    # (Without the BatchNorm synchronisation the losses differ by 0.25.)
    np.testing.assert_allclose(losses(runs["two"]), losses(runs["one"]), atol=1e-3)
    frames = load_demos(path).frames
    a, b = (Encoder.load(tmp_path / n).embed(frames) for n in ("one", "two"))
    assert np.abs(a - b).max() < 0.05 * np.abs(a).mean()  # measured: 0.9% (float sums in another order)


@pytest.mark.slow
def test_bc_under_torchrun_with_two_processes_matches_one_process(tmp_path):
    path = tmp_path / "demos.hdf5"
    write_demos(path, [fake_episode(s, steps=4) for s in range(3)], ENV_ARGS)  # 2 train episodes (8 frames), 1 validation
    runs = run_both(tmp_path, ["-m", "vinn_policy.baselines.bc", "--demos", str(path), "--config.epochs", "2", "--config.batch-size", "8",
                               "--config.patience", "0", "--config.val-fraction", "0.34", "--config.encoder.image-size", "32"])
    np.testing.assert_allclose(losses(runs["two"]), losses(runs["one"]), rtol=1e-3)
    frames = load_demos(path).frames
    a, b = (BCPolicy.load(tmp_path / n).act_batch(frames) for n in ("one", "two"))
    np.testing.assert_allclose(a, b, atol=0.05 * np.abs(a).mean())
