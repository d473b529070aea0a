"""BYOL self-supervised training of the image encoder on a task's frames alone (no action labels).

Online network:  encoder -> projector -> predictor      (trained by Adam)
Target network:  encoder -> projector                   (moved only by EMA: t <- tau*t + (1-tau)*o)
Loss: 2 - 2 cos(p_online(view1), z_target(view2)) + the same with the views swapped, batch mean.

Written here (~250 lines) rather than taken from byol-pytorch, whose defaults changed between releases
(0.9.1 switched on simplicial embeddings) and whose augmentations share one random draw per batch.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import nn
from torchvision.transforms import v2 as T
from tqdm.auto import tqdm

from vinn_policy import distributed
from vinn_policy.artefact import load_artefact, load_optimizer, optimizer_tensors, save_artefact
from vinn_policy.encoder import Encoder, EncoderConfig, build_trunk, check_images, normalize, resize_uint8

CHECKPOINT_NAME = "byol_checkpoint"
BYOL_VERSION = 1
"""Version of BYOL training, saved in checkpoints and part of the cache key of trained encoders (pipeline.cached_byol).
Bump it whenever a change to this module alters what `train_byol` produces from the same frames and config, so no
encoder or checkpoint made by older code is reused."""
SCHEDULE_FIELDS = ("checkpoint_every",)
"""BYOLConfig fields that say when to save, not what is trained: outside the cache key, free to change on resume."""


@dataclass
class BYOLConfig:
    """BYOL training settings. Defaults are sized for a 2-core CPU; `BYOLConfig.paper()` is the paper's."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    epochs: int = 6
    """CPU default: ~7 min for 50 demos (~3k frames) at 84 px on 2 cores (~44 images/s); the paper ran 100."""
    batch_size: int = 64
    lr: float = 3e-4
    tau: float = 0.99
    """EMA rate of the target network, constant as in the paper's code."""
    hidden_dim: int = 4096
    projection_dim: int = 256
    crop_scale: tuple[float, float] = (0.6, 1.0)
    jitter: tuple[float, float, float, float] = (0.8, 0.8, 0.8, 0.2)
    """ColorJitter brightness, contrast, saturation, hue."""
    jitter_p: float = 0.3
    grayscale_p: float = 0.2
    blur_p: float = 0.2
    blur_sigma: tuple[float, float] = (1.0, 2.0)
    seed: int = 0
    checkpoint_every: int = 1
    """Epochs between checkpoints (when a checkpoint directory is given); it may change when resuming."""

    def __post_init__(self) -> None:
        if isinstance(self.encoder, dict):
            self.encoder = EncoderConfig(**self.encoder)
        for name in ("epochs", "batch_size", "hidden_dim", "projection_dim", "checkpoint_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"BYOLConfig.{name} must be an integer >= 1; got {getattr(self, name)!r}.")
        if self.batch_size < 2:
            raise ValueError("BYOLConfig.batch_size must be >= 2 (BatchNorm needs two images per batch).")
        if not (self.lr > 0 and 0 <= self.tau < 1):
            raise ValueError(f"Need lr > 0 and 0 <= tau < 1; got lr={self.lr}, tau={self.tau}.")
        self.crop_scale, self.jitter = tuple(self.crop_scale), tuple(self.jitter)
        self.blur_sigma = tuple(self.blur_sigma)

    @classmethod
    def paper(cls) -> BYOLConfig:
        """The paper's settings: ResNet-50 at 224 px, batch 168, 100 epochs (a GPU job)."""
        return cls(encoder=EncoderConfig.paper(), epochs=100, batch_size=168)


def mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """BYOL's projector/predictor: Linear -> BatchNorm -> ReLU -> Linear."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """(B, P) predictions, (B, P) targets -> (B,) 2 - 2 cos(p, z)."""
    return 2 - 2 * (F.normalize(p, dim=-1) * F.normalize(z, dim=-1)).sum(dim=-1)


def augmentation(config: BYOLConfig) -> T.Compose:
    """The paper's augmentations without horizontal flip, on one (3, S, S) image in [0, 1]."""
    size = config.encoder.image_size
    return T.Compose([
        T.RandomResizedCrop(size, scale=config.crop_scale, antialias=True),
        T.RandomApply([T.ColorJitter(*config.jitter)], p=config.jitter_p),
        T.RandomGrayscale(p=config.grayscale_p),
        T.RandomApply([T.GaussianBlur(3, sigma=config.blur_sigma)], p=config.blur_p),
    ])


class BYOL(nn.Module):
    """Online encoder/projector/predictor and their EMA target."""

    def __init__(self, encoder: nn.Module, feature_dim: int, hidden_dim: int, projection_dim: int) -> None:
        super().__init__()
        self.online_encoder = encoder
        self.online_projector = mlp(feature_dim, hidden_dim, projection_dim)
        self.predictor = mlp(projection_dim, hidden_dim, projection_dim)
        self.target_encoder = copy.deepcopy(encoder).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.online_projector).requires_grad_(False)

    def online_parameters(self) -> list[nn.Parameter]:
        return [*self.online_encoder.parameters(), *self.online_projector.parameters(), *self.predictor.parameters()]

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        """Two (B, 3, S, S) normalised views of the same images -> scalar symmetric loss."""
        views = torch.cat([view1, view2])  # (2B, 3, S, S): one pass, BatchNorm sees both views
        p1, p2 = self.predictor(self.online_projector(self.online_encoder(views))).chunk(2)
        with torch.no_grad():
            z1, z2 = self.target_projector(self.target_encoder(views)).chunk(2)
        return (byol_loss(p1, z2) + byol_loss(p2, z1)).mean()

    @torch.no_grad()
    def update_target(self, tau: float) -> None:
        """t <- tau*t + (1-tau)*o for parameters; BatchNorm statistics are copied."""
        for online, target in ((self.online_encoder, self.target_encoder), (self.online_projector, self.target_projector)):
            for o, t in zip(online.parameters(), target.parameters(), strict=True):
                t.lerp_(o, 1.0 - tau)
            for o, t in zip(online.buffers(), target.buffers(), strict=True):
                t.copy_(o)


def train_step(model: BYOL, optimizer: torch.optim.Optimizer, view1: torch.Tensor, view2: torch.Tensor, tau: float,
               forward: nn.Module | None = None) -> float:
    """One Adam step on the online network, then the EMA update of the target. Returns the loss.
    `forward`: the DistributedDataParallel wrapper of `model` when training on several processes."""
    loss = (forward or model)(view1, view2)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    model.update_target(tau)
    return float(loss.detach())


def augment_batch(images: torch.Tensor, aug: T.Compose) -> torch.Tensor:
    """uint8 (B, 3, S, S) -> float (B, 3, S, S) in [0, 1], one independent random draw per image."""
    x = images.float().div_(255.0)
    return torch.stack([aug(img) for img in x])


def result_settings(config: BYOLConfig) -> dict:
    """What determines the encoder trained on given frames: the config (as saved in JSON) without its
    SCHEDULE_FIELDS, and the training code's BYOL_VERSION. The cache key of pipeline.cached_byol."""
    return _settings(json_roundtrip(asdict(config)), BYOL_VERSION)


def _settings(config: dict, version: int | None) -> dict:
    return {**{k: v for k, v in config.items() if k not in SCHEDULE_FIELDS}, "version": version}


def _save_checkpoint(path: Path, model: BYOL, optimizer: torch.optim.Optimizer, config: BYOLConfig, epoch: int, losses: list[float]) -> None:
    optim, param_groups = optimizer_tensors(optimizer)
    tensors = {**{f"model.{k}": v for k, v in model.state_dict().items()}, **optim}
    meta = {"config": asdict(config), "version": BYOL_VERSION, "epoch": epoch, "losses": losses, "param_groups": param_groups}
    save_artefact(path, "byol_checkpoint", tensors, meta)


def _load_checkpoint(path: Path, model: BYOL, optimizer: torch.optim.Optimizer, config: BYOLConfig) -> tuple[int, list[float]]:
    tensors, meta = load_artefact(path, "byol_checkpoint")
    saved = _settings(meta["config"], meta.get("version"))  # None: made before checkpoints recorded the version
    now = result_settings(config)
    for settings in (saved, now):
        settings.pop("epochs", None)  # may be raised to train longer
    if saved != now:
        diff = {k: (saved.get(k), now.get(k)) for k in set(saved) | set(now) if saved.get(k) != now.get(k)}
        raise ValueError(f"The checkpoint in {path} was made with other settings {diff} (saved, now); "
                         "use another checkpoint directory or delete it to start afresh.")
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    load_optimizer(optimizer, tensors, meta["param_groups"], path)
    return int(meta["epoch"]), list(meta["losses"])


def json_roundtrip(d: dict) -> dict:
    """Tuples become lists, as they do in a saved config.json."""
    return json.loads(json.dumps(d))


def train_byol(
    frames: NDArray[np.uint8],
    config: BYOLConfig | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    device: str | None = None,
) -> tuple[Encoder, list[float]]:
    """Train an encoder with BYOL on `frames` and return it with the mean loss of each epoch.

    Args:
        frames: (N, H, W, 3) uint8 images of the task (resized once to the encoder's image size).
        config: training settings (`BYOLConfig()` if None).
        checkpoint_dir: if given, a checkpoint is written there atomically every `checkpoint_every` epochs,
            and a call with a checkpoint already there resumes from its epoch, optimizer and EMA state
            (the settings and BYOL_VERSION must match, except `epochs`, which may be raised to train longer, and
            `checkpoint_every`). A checkpoint past `epochs` is an error rather than returned: its encoder was
            trained longer than asked, and silently handing it back would mislabel it.
        progress: show a tqdm bar with the running loss.
        device: "cpu", "cuda", ...; default cuda when available. On a GPU the frames are kept on the device
            and augmented there.

    Under torchrun with several processes this is data-parallel (vinn_policy.distributed): each rank draws
    the same global batch and augmentations, trains on its shard with synchronised BatchNorm, and the result
    matches one process. Only rank 0 writes checkpoints and shows progress.

    Returns:
        (encoder, losses): the online encoder (origin "byol") and the per-epoch mean losses.

    Raises:
        ValueError: fewer than 2 frames; a checkpoint made with other settings, or at an epoch past `epochs`.
    """
    config = config or BYOLConfig()
    frames = check_images(frames)
    if len(frames) < 2:
        raise ValueError(f"BYOL needs at least 2 frames; got {len(frames)}.")
    rank, world = distributed.init()
    device = distributed.device(device)
    data = resize_uint8(frames, config.encoder.image_size).to(device)  # (N, 3, S, S) uint8; augmentation re-crops anyway
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = BYOL(build_trunk(config.encoder.arch), config.encoder.feature_dim, config.hidden_dim, config.projection_dim)
    if world > 1:
        model = distributed.convert_batchnorm(model, to_sync=True)
    model.to(device, memory_format=torch.channels_last)  # ~12% faster convolutions on this CPU (oneDNN)
    optimizer = torch.optim.Adam(model.online_parameters(), lr=config.lr)
    ckpt = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    start, losses = (_load_checkpoint(ckpt, model, optimizer, config) if ckpt is not None and ckpt.exists() else (0, []))
    if start > config.epochs:
        raise ValueError(f"The checkpoint in {ckpt} is at epoch {start}, more than the {config.epochs} epochs asked for; "
                         f"ask for epochs >= {start} to resume it, or use another checkpoint directory (or delete this one) "
                         f"to train {config.epochs} epochs afresh.")

    aug = augmentation(config)
    batch = min(config.batch_size, len(data))
    steps_per_epoch = max(1, len(data) // batch)  # drop the ragged last batch: BatchNorm dislikes tiny ones
    mine = distributed.shard(batch, rank, world)
    model.train()
    forward = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else None
    bar = tqdm(total=(config.epochs - start) * steps_per_epoch, desc="BYOL", unit="step", disable=not progress or rank > 0)
    for epoch in range(start, config.epochs):
        # Each epoch's shuffling and augmentations come from its own seed, so a resumed run is identical.
        with torch.random.fork_rng(devices=[]):  # augmentation parameters are drawn on the CPU generator
            torch.manual_seed(config.seed * 1_000_003 + epoch)
            order = torch.randperm(len(data)).to(device)
            epoch_loss = 0.0
            for step in range(steps_per_epoch):
                images = data[order[step * batch : (step + 1) * batch]]
                v1 = normalize(augment_batch(images, aug), config.encoder.mean, config.encoder.std)
                v2 = normalize(augment_batch(images, aug), config.encoder.mean, config.encoder.std)
                v1, v2 = (v[mine].contiguous(memory_format=torch.channels_last) for v in (v1, v2))
                loss = distributed.mean_over_ranks(train_step(model, optimizer, v1, v2, config.tau, forward), world)
                epoch_loss += loss
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss:.3f}")
        losses.append(epoch_loss / steps_per_epoch)
        if ckpt is not None and rank == 0 and ((epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.epochs):
            _save_checkpoint(ckpt, model, optimizer, config, epoch + 1, losses)
    bar.close()
    trunk = distributed.convert_batchnorm(model.online_encoder.to("cpu"), to_sync=False)
    return Encoder(config=config.encoder, trunk=trunk, origin="byol"), losses


@dataclass
class TrainArgs:
    """Train a BYOL encoder on a demonstration file's frames and save it (rank 0 saves under torchrun)."""

    demos: str
    """HDF5 demonstration file (vinn-collect or robomimic layout)."""
    out: str
    """Directory of the saved encoder (Encoder.load)."""
    config: BYOLConfig = field(default_factory=BYOLConfig)
    paper: bool = False
    """The paper's settings (BYOLConfig.paper(): ResNet-50, 224 px, batch 168, 100 epochs) instead of --config.*."""
    max_episodes: int | None = None
    checkpoint_dir: str | None = None
    """Resumable checkpoints every --config.checkpoint-every epochs."""


def cli() -> None:
    """python -m vinn_policy.byol --demos F --out DIR; the same under torchrun --nproc_per_node N -m vinn_policy.byol."""
    import tyro

    from vinn_policy.demos.dataset import load_demos

    args = tyro.cli(TrainArgs)
    config = BYOLConfig.paper() if args.paper else args.config
    rank, world = distributed.init()
    encoder, losses = train_byol(load_demos(args.demos, max_episodes=args.max_episodes).frames, config, args.checkpoint_dir,
                                 progress=rank == 0)
    if rank == 0:
        print(f"BYOL on {world} process(es): epoch losses {[round(x, 4) for x in losses]}; saved {encoder.save(args.out)}")
    if world > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    cli()
