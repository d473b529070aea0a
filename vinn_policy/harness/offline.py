"""Offline evaluation (the paper's table): action error of each method on held-out demonstration frames.

Episodes are split three ways: train (VINN's database, BC's training set), validation (VINN's k and BC's
early stopping) and test (the reported numbers). The metric is the paper's: translation MSE, the mean over
the 3 translation dims of the squared error, averaged over test frames; plus gripper accuracy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from vinn_policy.actions import GRIPPER_INDEX, TRANSLATION_DIMS
from vinn_policy.baselines import OpenLoopPolicy, RandomPolicy
from vinn_policy.baselines.bc import BCConfig, BCPolicy, split_episodes
from vinn_policy.database import EmbeddingDatabase
from vinn_policy.encoder import Encoder


def translation_mse(pred: NDArray, target: NDArray, dims: tuple[int, ...] = TRANSLATION_DIMS) -> float:
    """Mean over frames and the translation dims of the squared error. pred, target: (N, A)."""
    d = list(dims)
    return float(((np.asarray(pred)[:, d] - np.asarray(target)[:, d]) ** 2).mean())


def gripper_accuracy(pred: NDArray, target: NDArray, gripper_index: int = GRIPPER_INDEX, threshold: float = 0.0) -> float:
    """Share of frames whose predicted gripper command (dimension gripper_index; -1: the last) is on the same side
    of `threshold` as the label."""
    return float(((np.asarray(pred)[:, gripper_index] > threshold) == (np.asarray(target)[:, gripper_index] > threshold)).mean())


@dataclass
class OfflineConfig:
    test_fraction: float = 0.2
    """Share of episodes held out for the reported numbers."""
    val_fraction: float = 0.15
    """Share of the remaining episodes used to choose k (VINN) and to stop early (BC)."""
    k_max: int = 50
    temperature: float = 1.0
    gripper_index: int | None = GRIPPER_INDEX
    """The voted gripper dimension (the last; actions.py), None for none."""
    seed: int = 0
    bc: BCConfig = field(default_factory=BCConfig)


@dataclass
class Split:
    train: NDArray[np.int64]  # frame rows
    val: NDArray[np.int64]
    test: NDArray[np.int64]


def three_way_split(episode_ids: NDArray, config: OfflineConfig) -> Split:
    rest, test = split_episodes(episode_ids, config.test_fraction, config.seed)
    train_in_rest, val_in_rest = split_episodes(episode_ids[rest], config.val_fraction, config.seed + 1)
    return Split(rest[train_in_rest], rest[val_in_rest], test)


def knn_curve(embeddings: NDArray, actions: NDArray, episode_ids: NDArray, db_rows: NDArray, query_rows: NDArray,
              config: OfflineConfig) -> dict[str, list[float]]:
    """VINN's error for every k = 1..k_max, with one search (k_max neighbours) per query."""
    db = EmbeddingDatabase(embeddings[db_rows], actions[db_rows], episode_ids[db_rows], gripper_index=config.gripper_index)
    dist, idx = db.search(embeddings[query_rows], config.k_max)
    target = actions[query_rows]
    curve: dict[str, list[float]] = {"k": [], "mse": [], "gripper_accuracy": []}
    for k in range(1, dist.shape[1] + 1):
        pred = db.blend(dist[:, :k], idx[:, :k], config.temperature)[0].numpy()
        curve["k"].append(k)
        curve["mse"].append(translation_mse(pred, target))
        if config.gripper_index is not None:
            curve["gripper_accuracy"].append(gripper_accuracy(pred, target, config.gripper_index))
    return curve


def predict_frames(policy, frames: NDArray[np.uint8] | dict[str, NDArray], episode_ids: NDArray) -> NDArray[np.float32]:
    """A policy's action for each demonstration frame (frames, or the frames' observation dict: Demos.observations).

    Reactive policies (VINN, BC) see every frame. Chunked VINN steps through each episode in order, so a plan made at
    one frame supplies the actions of the frames after it, as in closed loop: its error is its plans', not one
    query's. Open-loop and random only see an episode's first frame and act step by step from there, as they would
    in closed loop (reset with the episode id as seed).
    """
    chunked = getattr(getattr(policy, "config", None), "chunk", 1) > 1
    if hasattr(policy, "act_batch") and not chunked:
        return policy.act_batch(frames)
    episode_ids = np.asarray(episode_ids)
    at = (lambda row: {k: v[row] for k, v in frames.items()}) if isinstance(frames, dict) else (lambda row: frames[row])
    pred = None
    for e in np.unique(episode_ids):
        rows = np.flatnonzero(episode_ids == e)
        policy.reset(seed=int(e))
        actions = np.stack([policy.act(at(row if chunked else rows[0])) for row in rows])
        pred = np.empty((len(episode_ids), actions.shape[1]), np.float32) if pred is None else pred
        pred[rows] = actions
    return pred


def _scores(pred: NDArray, target: NDArray, config: OfflineConfig) -> dict[str, float | None]:
    grip = gripper_accuracy(pred, target, config.gripper_index) if config.gripper_index is not None else None
    return {"mse": translation_mse(pred, target), "gripper_accuracy": grip}


def evaluate_offline(frames: NDArray[np.uint8], actions: NDArray, episode_ids: NDArray, encoders: dict[str, Encoder],
                     config: OfflineConfig | None = None, bc_encoder: str | None = "byol", with_bc: bool = True,
                     progress: bool = True) -> dict:
    """Every method's test-split error on one task's demonstrations.

    Args:
        encoders: name -> encoder for the kNN rows (e.g. {"byol": ..., "random": ..., "imagenet": ...}).
        bc_encoder: which of them BC-rep uses (frozen).
        with_bc: train the BC baselines (the slow part).

    Returns:
        {"split": episode counts, "methods": name -> {mse, gripper_accuracy, k?, train_seconds?},
         "k_curves": encoder name -> {"val": curve, "test": curve}}
    """
    config = config or OfflineConfig()
    actions, episode_ids = np.asarray(actions, np.float32), np.asarray(episode_ids)
    split = three_way_split(episode_ids, config)
    target = actions[split.test]
    methods: dict[str, dict] = {}
    curves: dict[str, dict] = {}
    for name, encoder in encoders.items():
        t = time.perf_counter()
        emb = encoder.embed(frames)
        val = knn_curve(emb, actions, episode_ids, split.train, split.val, config)
        test = knn_curve(emb, actions, episode_ids, split.train, split.test, config)
        best = int(np.argmin(val["mse"]))  # k is chosen on validation, never on test
        curves[name] = {"val": val, "test": test}
        methods[f"vinn_{name}" if name != "byol" else "vinn"] = {
            "mse": test["mse"][best], "k": val["k"][best],
            "gripper_accuracy": test["gripper_accuracy"][best] if test["gripper_accuracy"] else None,
            "seconds": time.perf_counter() - t}
    if with_bc:
        bc_cfg = replace(config.bc, gripper_index=config.gripper_index)
        train_val = np.concatenate([split.train, split.val])
        val_eps = np.unique(episode_ids[split.val])
        bc = BCPolicy.fit_end_to_end(frames[train_val], actions[train_val], episode_ids[train_val], bc_cfg,
                                     val_episodes=val_eps, progress=progress)
        methods["bc"] = {**_scores(bc.act_batch(frames[split.test]), target, config), "train_seconds": bc.report.seconds,
                         "best_epoch": bc.report.best_epoch, "stopped_early": bc.report.stopped_early}
        if bc_encoder is not None:
            rep = BCPolicy.fit_on_features(frames[train_val], actions[train_val], episode_ids[train_val], encoders[bc_encoder],
                                           bc_cfg, val_episodes=val_eps, progress=progress)
            methods["bc_rep"] = {**_scores(rep.act_batch(frames[split.test]), target, config),
                                 "train_seconds": rep.report.seconds, "best_epoch": rep.report.best_epoch,
                                 "stopped_early": rep.report.stopped_early}
    # Open-loop: each test episode replays the training demo with the nearest first frame.
    open_loop = OpenLoopPolicy.fit(frames[split.train], actions[split.train], episode_ids[split.train])
    random = RandomPolicy(action_dim=actions.shape[1], seed=config.seed)
    for name, policy in (("open_loop", open_loop), ("random", random)):
        methods[name] = _scores(predict_frames(policy, frames[split.test], episode_ids[split.test]), target, config)
    n_eps = {name: int(len(np.unique(episode_ids[rows]))) for name, rows in vars(split).items()}
    return {"split": {"episodes": n_eps, "frames": {k: int(len(v)) for k, v in vars(split).items()}},
            "methods": methods, "k_curves": curves}
