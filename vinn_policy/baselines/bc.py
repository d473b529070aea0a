"""Behaviour-cloning baselines, all a trunk + MLP head with the policy surface reset/act/save/load:

- `bc` (BCConfig.robomimic): robomimic's image BC, the field's standard visual recipe: ResNet-18 conv trunk,
  spatial-softmax keypoints instead of global pooling, random crops in training and the centre crop at test.
- `bc_paper` (BCConfig.paper_recipe): the VINN paper's BC, a globally pooled ResNet + MLP with BYOL's augmentations.
- `bc_rep`: an MLP on a frozen encoder's standardised features (the paper's BC-rep).

All regress the translation dims with MSE on raw actions (VINN blends raw actions, so none normalises) and,
when `gripper_index` is set, classify the gripper (open/closed, BCE on one logit), outputting the
demonstrations' open/closed values as VINN's vote does. Training splits the demos by episode into
train/validation, lowers the learning rate when the validation loss stalls, stops once it has not improved
for `patience` epochs (then the run converged) or at the `epochs` cap (then it did not), and keeps the
weights of the best validation epoch.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import nn
from tqdm.auto import tqdm

from vinn_policy import distributed
from vinn_policy.actions import resolve_gripper_index
from vinn_policy.artefact import (
    ArtefactError,
    load_artefact,
    load_optimizer,
    optimizer_tensors,
    require_keys,
    save_artefact,
)
from vinn_policy.byol import BYOLConfig, augment_batch, augmentation
from vinn_policy.database import check_rows
from vinn_policy.encoder import Encoder, EncoderConfig, check_images, custom_trunk, normalize, resize_uint8
from vinn_policy.policy import extract_images

BC_VERSION = 2
"""Version of BC training, part of the cache key of trained policies (pipeline.cached_bc). Bump it whenever a change
to this module alters what fitting produces from the same data and config, so no policy trained by older code is
reused. 1: gripper_index=-1 resolved to the last dimension (before, its logit was also trained with MSE).
2: learning rate lowered on validation plateaus; BC-rep standardises its features."""

POOLINGS = ("avg", "spatial_softmax")


def split_episodes(episode_ids: NDArray[np.integer], held_out_fraction: float, seed: int = 0) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Rows of (kept, held-out) episodes; at least one episode on each side.

    Args:
        episode_ids: (N,) episode of each frame.
        held_out_fraction: share of episodes (not frames) held out, rounded, clamped to [1, E - 1].
    Returns:
        (kept_rows, held_out_rows): int64 row indices, each in ascending order.
    """
    episodes = np.unique(episode_ids)
    if len(episodes) < 2:
        raise ValueError(f"Need at least 2 episodes to split by episode; got {len(episodes)}.")
    n_out = int(np.clip(round(held_out_fraction * len(episodes)), 1, len(episodes) - 1))
    held_out = np.random.default_rng(seed).permutation(episodes)[:n_out]
    mask = np.isin(episode_ids, held_out)
    return np.flatnonzero(~mask), np.flatnonzero(mask)


@dataclass
class BCConfig:
    """Training settings shared by BC end-to-end and BC-rep (CPU-sized defaults; see `paper()`)."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    hidden: tuple[int, ...] | None = None
    """MLP head widths; None scales the paper's 2048->2048->1024 head to the feature size (D, D/2)."""
    pooling: str = "avg"
    """How the trunk's feature map becomes a vector (end-to-end only): avg (torchvision's global average pool, the
    paper's BC) or spatial_softmax (robomimic: `keypoints` expected image coordinates, projected to `feature_dim`)."""
    keypoints: int = 32
    feature_dim: int = 64
    crop: int | None = None
    """End-to-end: a random crop of this many pixels (of the encoder's image_size) per training image, the centre
    crop at test (robomimic's CropRandomizer; 76 of 84). None: the whole image."""
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    epochs: int = 60
    """The cap; early stopping normally ends training first (the report says when it did not: not converged)."""
    patience: int = 6
    """Stop after this many epochs without a lower validation loss (0: never stop early)."""
    lr_patience: int = 2
    """Multiply the learning rate by `lr_factor` once more than this many epochs in a row brought no lower validation
    loss (torch's ReduceLROnPlateau: with 2, on the third)."""
    lr_factor: float = 0.3
    val_fraction: float = 0.2
    """Fraction of episodes held out for validation / early stopping."""
    augment: bool = True
    """BYOL's augmentations (no flip) on training images; end-to-end only."""
    standardize: bool = True
    """BC-rep: standardise the frozen features per dimension with the training features' statistics (False: raw
    features, as before BC_VERSION 2; benchmarks/bc_rep.py measures the difference)."""
    gripper_index: int | None = None
    """The gripper's action dimension (-1: the last, as in vinn_policy.actions), classified open/closed; None: all
    dims regressed. Fitting resolves it against the action size: a fitted policy's config holds the index >= 0."""
    seed: int = 0
    image_key: str = "image"

    def __post_init__(self) -> None:
        if isinstance(self.encoder, dict):
            self.encoder = EncoderConfig(**self.encoder)
        if self.hidden is not None:
            self.hidden = tuple(int(h) for h in self.hidden)
        if self.pooling not in POOLINGS:
            raise ValueError(f"BCConfig.pooling must be one of {POOLINGS}; got {self.pooling!r}.")
        if self.crop is not None and not 32 <= self.crop <= self.encoder.image_size:
            raise ValueError(f"BCConfig.crop must be between 32 and the encoder's image_size {self.encoder.image_size} px; got {self.crop}.")
        if not (self.lr > 0 and self.batch_size >= 2 and self.epochs >= 1 and self.patience >= 0 and self.lr_patience >= 0
                and 0 < self.lr_factor <= 1 and self.weight_decay >= 0 and 0 < self.val_fraction < 1):
            raise ValueError("Invalid BCConfig: need lr > 0, batch_size >= 2, epochs >= 1, patience >= 0, lr_patience >= 0, "
                             f"0 < lr_factor <= 1, weight_decay >= 0, 0 < val_fraction < 1; got {self}.")

    @classmethod
    def robomimic(cls, encoder: EncoderConfig | None = None, **overrides) -> BCConfig:
        """robomimic's image BC (bc): spatial-softmax keypoints (32, projected to 64), random crops of 76/84 of the
        image, a 1024-1024 MLP, no colour augmentation."""
        encoder = encoder or EncoderConfig()
        crop = max(32, round(encoder.image_size * 76 / 84))
        return cls(**{"encoder": encoder, "pooling": "spatial_softmax", "crop": crop, "hidden": (1024, 1024), "augment": False, **overrides})

    @classmethod
    def paper_recipe(cls, encoder: EncoderConfig | None = None, **overrides) -> BCConfig:
        """The VINN paper's BC (bc_paper) and BC-rep architecture: a globally pooled trunk and a (D, D/2) MLP, with
        BYOL's augmentations end-to-end."""
        return cls(encoder=encoder or EncoderConfig(), **overrides)

    @classmethod
    def paper(cls, representation: bool = False) -> BCConfig:
        """The paper's settings: ResNet-50 at 224 px, Adam 1e-3, batch 64 (end-to-end) or 256 (BC-rep), up to 100 epochs."""
        return cls(encoder=EncoderConfig.paper(), batch_size=256 if representation else 64, epochs=100, patience=10)

    @property
    def kind(self) -> str:
        """bc (spatial softmax) or bc_paper (global pooling), for end-to-end policies."""
        return "bc" if self.pooling == "spatial_softmax" else "bc_paper"


def trunk_spec(config: BCConfig) -> dict:
    """The pooling and crop of an end-to-end BC's trunk, as encoder.custom_trunk takes them (and artefacts save them)."""
    return {"pooling": config.pooling, "keypoints": config.keypoints, "projection": config.feature_dim, "crop": config.crop}


def bc_trunk(config: BCConfig) -> nn.Module:
    """A randomly initialised ResNet for end-to-end BC: torchvision's global pool (avg) or spatial-softmax keypoints
    and their projection in place of the pool and classifier, after the crop (if any)."""
    return custom_trunk(config.encoder.arch, trunk_spec(config))


def trunk_feature_dim(config: BCConfig) -> int:
    """The size of bc_trunk(config)'s output."""
    return config.feature_dim if config.pooling == "spatial_softmax" else config.encoder.feature_dim


def feature_encoder(policy: BCPolicy) -> Encoder:
    """An end-to-end BC's trained trunk (centre crop, pooling and projection) as an Encoder of its own, for a kNN
    over the features BC learned from the actions (benchmark method vinn_bc_encoder): saved and loaded with any policy
    that embeds with it. BC-rep's trunk is the frozen encoder it was given."""
    if policy.frozen:
        raise ValueError("BC-rep's features are its given encoder's: use that encoder.")
    return Encoder(policy.encoder.config, trunk=policy.encoder.trunk, origin="bc", trunk_spec=trunk_spec(policy.config),
                   output_dim=trunk_feature_dim(policy.config))


class ActionHead(nn.Module):
    """MLP features -> action; the gripper dim (if any) is a logit. Features are first standardised,
    (x - feature_mean) * feature_scale (BC-rep sets them from its training features; identity otherwise)."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], action_dim: int, gripper_index: int | None,
                 gripper_values: tuple[float, float] = (-1.0, 1.0)) -> None:
        super().__init__()
        dims, layers = (in_dim, *hidden), []
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
        self.mlp = nn.Sequential(*layers, nn.Linear(dims[-1], action_dim))
        self.gripper_index = resolve_gripper_index(gripper_index, action_dim)  # >= 0: `loss` tells it from the MSE dims
        self.register_buffer("gripper_values", torch.tensor(gripper_values, dtype=torch.float32))  # (open, closed)
        self.register_buffer("feature_mean", torch.zeros(in_dim))
        self.register_buffer("feature_scale", torch.ones(in_dim))

    def standardize_on(self, features: torch.Tensor) -> None:
        """Standardise inputs per dimension with these features' statistics. Dims that never vary here (dead ReLU units)
        carry nothing to learn from and are zeroed, so whatever the features' overall scale, training is the same."""
        self.feature_mean.copy_(features.mean(0))
        std = features.std(0)
        self.feature_scale.copy_(torch.where(std > 1e-6 * std.max(), 1 / std, torch.zeros_like(std)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp((features - self.feature_mean) * self.feature_scale)  # (B, A)

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.gripper_index is None:
            return F.mse_loss(out, target)
        g = self.gripper_index
        keep = [i for i in range(out.shape[1]) if i != g]
        closed = (target[:, g] > self.gripper_values.mean()).float()
        return F.mse_loss(out[:, keep], target[:, keep]) + F.binary_cross_entropy_with_logits(out[:, g], closed)

    def predict(self, out: torch.Tensor) -> torch.Tensor:
        actions = out.clone()
        if self.gripper_index is not None:
            closed = out[:, self.gripper_index] > 0
            actions[:, self.gripper_index] = torch.where(closed, self.gripper_values[1], self.gripper_values[0])
        return actions


@dataclass
class TrainReport:
    train_loss: list[float]
    val_loss: list[float]
    best_epoch: int
    stopped_early: bool
    """The validation loss stopped improving for `patience` epochs before the cap: the run converged."""
    seconds: float
    lr: list[float] = field(default_factory=list)
    """The learning rate of each epoch."""

    def converged(self, patience: int) -> bool:
        """Stopped early, or reached the cap on a plateau: its best validation loss over the last `patience` epochs less
        than PLATEAU_TOLERANCE below the best before them."""
        if self.stopped_early:
            return True
        recent, before = self.val_loss[-patience:], self.val_loss[:-patience]
        return patience > 0 and bool(before) and min(recent) >= (1 - PLATEAU_TOLERANCE) * min(before)


PLATEAU_TOLERANCE = 0.01
"""How little a validation loss may still fall over the last `patience` epochs before the cap for the training to count
as converged: at a learning rate the plateaus have cut a hundredfold, new bests by a fraction of a percent keep
resetting the patience without the policy learning anything more. Reporting only: training still stops as before."""

CHECKPOINT_NAME = "bc_checkpoint"


def _train(model: nn.Module, inputs: Callable[[NDArray[np.int64], bool], torch.Tensor], targets: torch.Tensor,
           loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], train_rows: NDArray[np.int64], val_rows: NDArray[np.int64],
           config: BCConfig, desc: str, progress: bool, checkpoint_dir: str | Path | None = None, data: str = "") -> TrainReport:
    """AdamW on loss(model(inputs(rows, train)), targets[rows]), with per-epoch validation, the learning rate lowered on
    validation plateaus, early stopping and best-epoch restoring.

    Under torchrun with several processes each rank takes its shard of every batch (inputs, augmentations
    included, are drawn for the whole batch first) and DistributedDataParallel averages the gradients
    (vinn_policy.distributed), so the result matches one process, except for random crops (BCConfig.crop),
    which each rank draws for its own shard inside the model.

    `checkpoint_dir`: after every epoch the whole training state (weights, best weights, optimizer, scheduler, random
    generators, curves) is written there atomically, and a call that finds one resumes from it: on one process the
    result is the same as an uninterrupted run's (several processes resume with rank 0's random generators, from a
    directory they all see). `data`: a digest of the training data (data_digest); a checkpoint of other data or
    settings is refused, one of more epochs than `config.epochs` too.

    Raises:
        FloatingPointError: a training or validation loss is NaN/inf before any epoch had a finite validation loss.
        ValueError: the checkpoint was made with other settings or data, or is past `config.epochs`.
    """
    rank, world = distributed.init()
    if world > 1:
        model = distributed.convert_batchnorm(model, to_sync=True)
    forward = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=config.lr_factor, patience=config.lr_patience, threshold=0)
    gen = torch.Generator().manual_seed(config.seed)
    best, best_state, best_epoch, history = float("inf"), None, 0, TrainReport([], [], 0, False, 0.0)
    ckpt = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    if ckpt is not None and ckpt.exists():
        best, best_state, best_epoch, history = _load_checkpoint(ckpt, model, optimizer, plateau, gen, config, data, targets.device)
    start, clock = len(history.val_loss), time.perf_counter() - history.seconds
    bar = tqdm(range(start, config.epochs if not history.stopped_early else start), desc=desc, unit="epoch",
               initial=start, total=config.epochs, disable=not progress or rank > 0)
    for epoch in bar:
        model.train()
        order = train_rows[torch.randperm(len(train_rows), generator=gen).numpy()]
        steps = max(1, len(order) // config.batch_size)
        total = 0.0
        for s in range(steps):
            rows = order[s * config.batch_size : (s + 1) * config.batch_size]
            mine = distributed.shard(len(rows), rank, world)
            step_loss = loss(forward(inputs(rows, True)[mine]), targets[rows][mine])
            optimizer.zero_grad(set_to_none=True)
            step_loss.backward()
            optimizer.step()
            total += distributed.mean_over_ranks(float(step_loss.detach()), world)
        model.eval()
        with torch.inference_mode():  # every rank validates on all rows: the same early-stopping decisions
            val = [float(loss(model(inputs(r, False)), targets[r])) * len(r) for r in np.array_split(val_rows, max(1, -(-len(val_rows) // 256)))]
        history.train_loss.append(total / steps)
        history.val_loss.append(sum(val) / len(val_rows))
        history.lr.append(optimizer.param_groups[0]["lr"])
        plateau.step(history.val_loss[-1])
        bar.set_postfix(train=f"{history.train_loss[-1]:.4f}", val=f"{history.val_loss[-1]:.4f}")
        if best_state is None:  # later, a non-finite loss only stops improving on the best epoch, which is kept
            _check_finite(history, epoch, desc)
        if history.val_loss[-1] < best:
            best, best_epoch = history.val_loss[-1], epoch
            best_state = copy.deepcopy(model.state_dict())
        elif config.patience and epoch - best_epoch >= config.patience:
            history.stopped_early = True
        history.seconds = time.perf_counter() - clock
        if ckpt is not None and rank == 0:
            _save_checkpoint(ckpt, model, best_state, optimizer, plateau, gen, config, data, targets.device, best, best_epoch, history)
        if history.stopped_early:
            break
    model.load_state_dict(best_state)
    distributed.convert_batchnorm(model, to_sync=False).eval()
    history.best_epoch, history.seconds = best_epoch + 1, time.perf_counter() - clock
    return history


def data_digest(*arrays: NDArray | torch.Tensor) -> str:
    """What a checkpoint was trained on: a digest of the inputs (frames or features), actions and row splits."""
    digest = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a.cpu().numpy() if isinstance(a, torch.Tensor) else a)
        digest.update(f"{a.dtype}{a.shape}".encode())
        digest.update(a.data)
    return digest.hexdigest()


def _checkpoint_settings(config: BCConfig, data: str) -> dict:
    settings = {**result_settings(config), "data": data}
    settings.pop("epochs")  # the cap may be raised to train on
    return settings


def _save_checkpoint(path: Path, model: nn.Module, best_state: dict, optimizer: torch.optim.Optimizer,
                     plateau: torch.optim.lr_scheduler.ReduceLROnPlateau, gen: torch.Generator, config: BCConfig, data: str,
                     device: torch.device, best: float, best_epoch: int, history: TrainReport) -> None:
    optim, param_groups = optimizer_tensors(optimizer)
    tensors = {**{f"model.{k}": v for k, v in model.state_dict().items()}, **{f"best.{k}": v for k, v in best_state.items()},
               **optim, "rng.shuffle": gen.get_state(), "rng.torch": torch.get_rng_state()}
    if device.type == "cuda":  # random crops are drawn on the training device
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    meta = {"settings": _checkpoint_settings(config, data), "best": best, "best_epoch": best_epoch, "history": asdict(history),
            "param_groups": param_groups, "plateau": plateau.state_dict()}
    save_artefact(path, CHECKPOINT_NAME, tensors, meta)


def _load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                     plateau: torch.optim.lr_scheduler.ReduceLROnPlateau, gen: torch.Generator,
                     config: BCConfig, data: str, device: torch.device) -> tuple[float, dict, int, TrainReport]:
    """Restore a _save_checkpoint into these objects; returns (best, best_state, best_epoch, history)."""
    tensors, meta = load_artefact(path, CHECKPOINT_NAME)
    saved, now = meta.get("settings") or {}, _checkpoint_settings(config, data)
    if saved != now:
        diff = {k: (saved.get(k), now.get(k)) for k in set(saved) | set(now) if saved.get(k) != now.get(k)}
        raise ValueError(f"The BC checkpoint in {path} was made with other settings or data {diff} (saved, now); "
                         "use another checkpoint directory or delete it to train afresh.")
    try:
        history = TrainReport(**meta["history"])
        plateau.load_state_dict(meta["plateau"])
        best, best_epoch, param_groups = float(meta["best"]), int(meta["best_epoch"]), meta["param_groups"]
    except (KeyError, TypeError, ValueError) as e:
        raise ArtefactError(f"{path}: invalid BC checkpoint metadata ({e}).") from e
    if len(history.val_loss) > config.epochs:
        raise ValueError(f"The BC checkpoint in {path} is at epoch {len(history.val_loss)}, past the {config.epochs} asked for; "
                         "ask for at least as many epochs to resume it, or delete it to train afresh.")
    try:
        model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    except RuntimeError as e:
        raise ArtefactError(f"{path}: its weights do not fit this model: {str(e)[:200]}") from e
    best_state = {k[len("best."):]: v for k, v in tensors.items() if k.startswith("best.")}
    if best_state.keys() != model.state_dict().keys():
        raise ArtefactError(f"{path}: its best-epoch weights do not fit this model.")
    load_optimizer(optimizer, tensors, param_groups, path)
    require_keys(tensors, ["rng.shuffle", "rng.torch"], path)
    gen.set_state(tensors["rng.shuffle"])
    torch.set_rng_state(tensors["rng.torch"])
    if device.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    return best, best_state, best_epoch, history


def _check_finite(history: TrainReport, epoch: int, desc: str) -> None:
    """Raise if this epoch, with no finite validation loss before it, has a NaN/inf loss: no weights to keep."""
    for name, value in (("training", history.train_loss[-1]), ("validation", history.val_loss[-1])):
        if not np.isfinite(value):
            raise FloatingPointError(
                f"{desc}: the {name} loss at epoch {epoch + 1} is {value}, with no finite validation loss before it, "
                "so there are no weights to keep. Try a lower learning rate (BCConfig.lr), and check that the "
                "inputs (images, or the encoder's features) and the actions are finite.")


def _resolve_gripper(config: BCConfig, action_dim: int) -> BCConfig:
    """`config` with its gripper index as a dimension >= 0 of the action (ValueError if it is not one)."""
    return replace(config, gripper_index=resolve_gripper_index(config.gripper_index, action_dim))


def result_settings(config: BCConfig) -> dict:
    """What determines a policy fitted on given data: the config (as saved in JSON) and the training code's BC_VERSION.
    Part of the cache key of pipeline.cached_bc."""
    return {**json.loads(json.dumps(asdict(config))), "version": BC_VERSION}


def _rows(episode_ids: NDArray, val_episodes: object, config: BCConfig) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Train/validation rows: the given validation episodes, or a seeded split by episode."""
    if val_episodes is None:
        return split_episodes(episode_ids, config.val_fraction, config.seed)
    val = np.isin(episode_ids, np.asarray(list(val_episodes)))
    if val.all() or not val.any():
        raise ValueError("val_episodes must hold some but not all of the episodes.")
    return np.flatnonzero(~val), np.flatnonzero(val)


def _check_data(frames: object, actions: object, episode_ids: object) -> tuple[NDArray, NDArray, NDArray]:
    """The database's checks (finite actions, integer-valued episode ids, equal lengths), before any training."""
    frames = check_images(frames)
    actions, episode_ids, _, _ = check_rows(actions, episode_ids)
    if len(actions) != len(frames):
        raise ValueError(f"Expected one action per frame: {len(frames)} frames, {len(actions)} actions.")
    return frames, actions, episode_ids


class BCPolicy:
    """A parametric policy: encoder trunk + ActionHead. `frozen` = BC-rep (the encoder is not trained)."""

    def __init__(self, encoder: Encoder, head: ActionHead, config: BCConfig, frozen: bool, report: TrainReport | None = None) -> None:
        self.encoder, self.head, self.config, self.frozen, self.report = encoder, head, config, frozen, report

    @property
    def name(self) -> str:
        return "bc_rep" if self.frozen else self.config.kind

    @classmethod
    def _new_head(cls, d: int, actions: NDArray, config: BCConfig) -> ActionHead:
        hidden = config.hidden or (d, d // 2)
        g = config.gripper_index
        values = (float(actions[:, g].min()), float(actions[:, g].max())) if g is not None else (-1.0, 1.0)
        return ActionHead(d, hidden, actions.shape[1], g, values)

    @classmethod
    def fit_end_to_end(cls, frames: NDArray[np.uint8], actions: NDArray, episode_ids: NDArray, config: BCConfig | None = None,
                       val_episodes: object = None, progress: bool = True, device: str | None = None,
                       checkpoint_dir: str | Path | None = None) -> BCPolicy:
        """Train a randomly initialised trunk (bc_trunk: pooling and crop as configured) and the head together on
        (image, action) pairs, with BYOL's augmentations if `config.augment`.

        Early stopping uses `val_episodes` (episode ids) if given, else `config.val_fraction` of the episodes.
        `device`: where to train (default cuda when available; images are kept and augmented there); the policy
        returns on the CPU. `checkpoint_dir`: resumable training (see _train); give it the same data again.
        """
        frames, actions, episode_ids = _check_data(frames, actions, episode_ids)
        config = _resolve_gripper(config or BCConfig(), actions.shape[1])
        torch.manual_seed(config.seed)
        encoder = Encoder(config.encoder, trunk=bc_trunk(config))
        head = cls._new_head(trunk_feature_dim(config), actions, config)
        device = distributed.device(device)
        images = resize_uint8(frames, encoder.config.image_size).to(device)  # (N, 3, S, S) uint8
        targets = torch.from_numpy(actions).to(device)
        aug = augmentation(BYOLConfig(encoder=encoder.config))
        cfg = encoder.config

        def inputs(rows: NDArray[np.int64], train: bool) -> torch.Tensor:
            x = augment_batch(images[rows], aug) if train and config.augment else images[rows].float() / 255
            return normalize(x, cfg.mean, cfg.std).contiguous(memory_format=torch.channels_last)

        train_rows, val_rows = _rows(episode_ids, val_episodes, config)
        model = nn.Sequential(encoder.trunk, head).to(device, memory_format=torch.channels_last)  # faster training convolutions
        data = data_digest(frames, actions, train_rows, val_rows) if checkpoint_dir is not None else ""
        report = _train(model, inputs, targets, head.loss, train_rows, val_rows, config, "BC end-to-end", progress, checkpoint_dir, data)
        model.to("cpu")
        encoder.origin = "bc"
        return cls(encoder, head, config, frozen=False, report=report)

    @classmethod
    def fit_on_features(cls, frames: NDArray[np.uint8], actions: NDArray, episode_ids: NDArray, encoder: Encoder,
                        config: BCConfig | None = None, val_episodes: object = None, progress: bool = True,
                        device: str | None = None, features: NDArray[np.float32] | None = None,
                        checkpoint_dir: str | Path | None = None) -> BCPolicy:
        """BC-rep: embed frames once with a frozen encoder (on its device), train only the head (on `device`,
        default cuda when available; it returns on the CPU). `features`: `encoder.embed(frames)` if the caller has
        it already (it is not embedded again). `checkpoint_dir`: resumable training (see _train)."""
        frames, actions, episode_ids = _check_data(frames, actions, episode_ids)
        config = _resolve_gripper(config or BCConfig(), actions.shape[1])
        torch.manual_seed(config.seed)
        device = distributed.device(device)
        if features is None:
            features = encoder.embed(frames)
        elif np.shape(features) != (len(frames), encoder.feature_dim):
            raise ValueError(f"features must be the {len(frames)} frames' {encoder.feature_dim}-d embeddings; got shape {np.shape(features)}.")
        features = torch.from_numpy(np.asarray(features, np.float32)).to(device)  # (N, D)
        head = cls._new_head(encoder.feature_dim, actions, config).to(device)
        targets = torch.from_numpy(actions).to(device)

        train_rows, val_rows = _rows(episode_ids, val_episodes, config)
        if config.standardize:
            head.standardize_on(features[train_rows])
        data = data_digest(features, actions, train_rows, val_rows) if checkpoint_dir is not None else ""
        report = _train(head, lambda rows, train: features[rows], targets, head.loss, train_rows, val_rows, config, "BC-rep",
                        progress, checkpoint_dir, data)
        return cls(encoder, head.to("cpu"), config, frozen=True, report=report)

    def reset(self, seed: int | None = None) -> None:
        """BC is memoryless and deterministic."""

    def act(self, obs: object) -> NDArray[np.float32]:
        images = extract_images(obs, self.config.image_key)
        if len(images) != 1:
            raise ValueError(f"act() takes one observation; got a batch of {len(images)} (use act_batch).")
        return self.act_batch(images)[0]

    @torch.inference_mode()
    def act_batch(self, obs_batch: object) -> NDArray[np.float32]:
        features = torch.from_numpy(self.encoder.embed(extract_images(obs_batch, self.config.image_key)))
        self.head.eval()
        return self.head.predict(self.head(features)).numpy().astype(np.float32)

    def save(self, path: str | Path) -> Path:
        tensors = {**self.encoder.state_tensors(), **{f"head.{k}": v for k, v in self.head.state_dict().items()}}
        meta = {**self.encoder.meta(), "bc": asdict(self.config), "frozen": self.frozen,
                "head_dims": [m.out_features for m in self.head.mlp if isinstance(m, nn.Linear)],
                "train_report": asdict(self.report) if self.report else None}
        return save_artefact(path, "bc_policy", tensors, meta)

    @classmethod
    def load(cls, path: str | Path) -> BCPolicy:
        tensors, meta = load_artefact(path, "bc_policy")
        require_keys(tensors, ["head.gripper_values"], path)
        try:
            dims = [int(d) for d in meta["head_dims"]]
            config = _resolve_gripper(BCConfig(**meta["bc"]), dims[-1])  # policies saved before fitting resolved it hold -1
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise ArtefactError(f"{path}: invalid BC metadata ({e}).") from e
        frozen = bool(meta["frozen"])
        encoder = Encoder.from_saved(tensors, meta, path, trunk=None if frozen else bc_trunk(config))
        head = ActionHead(encoder.feature_dim if frozen else trunk_feature_dim(config), tuple(dims[:-1]), dims[-1], config.gripper_index)
        state = {k[5:]: v for k, v in tensors.items() if k.startswith("head.")}
        for name, value in head.state_dict().items():  # policies saved before BC_VERSION 2 have no feature scaling: identity
            if name.startswith("feature_"):
                state.setdefault(name, value)
        try:
            head.load_state_dict(state)
        except RuntimeError as e:
            raise ArtefactError(f"{path}: head weights do not match its metadata: {str(e)[:200]}") from e
        report = TrainReport(**meta["train_report"]) if meta.get("train_report") else None
        return cls(encoder, head.eval(), config, frozen=frozen, report=report)


@dataclass
class TrainArgs:
    """Train a BC baseline on a demonstration file and save it (rank 0 saves under torchrun)."""

    demos: str
    """HDF5 demonstration file."""
    out: str
    """Directory of the saved policy (BCPolicy.load)."""
    config: BCConfig = field(default_factory=BCConfig)
    encoder: str | None = None
    """A saved encoder: BC-rep on its frozen features. Without it, BC end-to-end."""
    max_episodes: int | None = None
    checkpoint_dir: str | None = None
    """Resumable training: a checkpoint every epoch, resumed by the same command."""


def cli() -> None:
    """python -m vinn_policy.baselines.bc --demos F --out DIR; the same under torchrun --nproc_per_node N -m vinn_policy.baselines.bc."""
    import tyro

    from vinn_policy.demos.dataset import load_demos

    args = tyro.cli(TrainArgs)
    demos = load_demos(args.demos, max_episodes=args.max_episodes)
    rank, world = distributed.init()
    data = (demos.frames, demos.actions, demos.episode_ids)
    if args.encoder:
        policy = BCPolicy.fit_on_features(*data, encoder=Encoder.load(args.encoder), config=args.config, progress=rank == 0,
                                          checkpoint_dir=args.checkpoint_dir)
    else:
        policy = BCPolicy.fit_end_to_end(*data, config=args.config, progress=rank == 0, checkpoint_dir=args.checkpoint_dir)
    if rank == 0:
        print(f"{policy.name} on {world} process(es): train losses {[round(x, 4) for x in policy.report.train_loss]}; "
              f"saved {policy.save(args.out)}")
    if world > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    cli()
