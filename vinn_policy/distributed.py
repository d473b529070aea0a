"""Data-parallel training under torchrun: the same command runs on one process, on 2 CPU processes, or a GPU cluster.

    torchrun --nproc_per_node 2 -m vinn_policy.byol --demos data/door-v1_84px.hdf5 --out runs/encoder

Under torchrun (WORLD_SIZE > 1) training joins a process group (nccl for CUDA tensors, gloo for CPU ones),
wraps the network in DistributedDataParallel and gives each rank an equal shard of every global batch.
BatchNorm statistics are synchronised across ranks, so N processes compute what one process computes with the
whole batch: torch's SyncBatchNorm on GPUs; on CPUs, where torch refuses it, `CpuSyncBatchNorm` below.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def init() -> tuple[int, int]:
    """(rank, world size); joins the process group once when launched by torchrun with more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend())
    return dist.get_rank(), dist.get_world_size()


def backend() -> str:
    """The process group's backend: nccl for CUDA tensors and gloo for CPU ones when there is a GPU, else gloo.

    Some reductions are of CPU tensors even when training on GPUs (`mean_over_ranks` of each step's loss),
    and nccl alone has no CPU backend: the first step failed. Reducing them with gloo, rather than copying
    each scalar to the GPU, keeps `mean_over_ranks` free of a device argument; gradients (DDP) and
    SyncBatchNorm statistics, the large CUDA reductions, stay on nccl.
    """
    return "cuda:nccl,cpu:gloo" if torch.cuda.is_available() else "gloo"


def device(rank_device: str | None) -> torch.device:
    """The requested device, else this rank's GPU (LOCAL_RANK) when there is one, else the CPU."""
    if rank_device is not None:
        return torch.device(rank_device)
    return torch.device(f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if torch.cuda.is_available() else "cpu")


def shard(batch: int, rank: int, world: int) -> slice:
    """This rank's rows of a global batch (every rank gets batch / world)."""
    if batch % world:
        raise ValueError(f"The batch size ({batch}) must divide evenly among the {world} processes.")
    size = batch // world
    return slice(rank * size, (rank + 1) * size)


def mean_over_ranks(value: float, world: int) -> float:
    """The mean of a per-rank scalar (e.g. the loss of its shard) over all ranks."""
    if world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t) / world


class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are summed over all ranks (differentiably, via gloo)."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.ndim < 2:
            raise ValueError(f"Expected at least 2-D input; got {x.ndim}-D.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce  # differentiable; its successor is private API

        dims = [0, *range(2, x.ndim)]
        c = x.shape[1]
        shape = [1, c] + [1] * (x.ndim - 2)
        stats = all_reduce(torch.cat([x.sum(dims), torch.tensor([x.numel() / c], dtype=x.dtype)]))  # (C + 1,) over ranks
        n = stats[-1]
        mean = stats[:c] / n
        # two passes: E[x^2] - E[x]^2 loses float32 digits where activations have a large mean
        var = all_reduce(((x - mean.view(shape)) ** 2).sum(dims)) / n  # biased, as BatchNorm normalises with
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * n / (n - 1), m)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def convert_batchnorm(module: nn.Module, to_sync: bool) -> nn.Module:
    """Swap every BatchNorm for its synchronised version (to_sync) or back, keeping parameters and statistics."""
    if to_sync and torch.cuda.is_available():
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if to_sync and isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        new = CpuSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        new.spatial = isinstance(module, nn.BatchNorm2d)
    elif not to_sync and isinstance(module, (CpuSyncBatchNorm, nn.SyncBatchNorm)):
        plain = nn.BatchNorm2d if getattr(module, "spatial", True) else nn.BatchNorm1d
        new = plain(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
    else:
        for name, child in module.named_children():
            module.add_module(name, convert_batchnorm(child, to_sync))
        return module
    new.load_state_dict(module.state_dict())
    if module.affine:  # e.g. BYOL's EMA target stays frozen
        new.requires_grad_(module.weight.requires_grad)
    return new.train(module.training)
