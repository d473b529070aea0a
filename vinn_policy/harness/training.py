"""The benchmark's training stage: the encoder, then every requested method fitted on the same demonstrations.

VINN variants share one embedding of the demos (it chooses their k on the validation demos and fills their
databases); BC and BC-rep are cached by data, config and code version (pipeline.py); open-loop and random
need no training. Each policy is saved under the run's policies/ folder and its offline error measured.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from vinn_policy.demos.dataset import Demos

from vinn_policy.actions import GRIPPER_INDEX
from vinn_policy.baselines import OpenLoopPolicy, RandomPolicy, load_policy
from vinn_policy.baselines.bc import BCPolicy, feature_encoder
from vinn_policy.database import EmbeddingDatabase
from vinn_policy.encoder import Encoder
from vinn_policy.harness.args import BenchmarkArgs
from vinn_policy.harness.offline import OfflineConfig, gripper_accuracy, knn_curve, predict_frames, translation_mse
from vinn_policy.harness.pipeline import cached_bc, cached_byol
from vinn_policy.keys import PROPRIO_KEYS, KeyLayout
from vinn_policy.policy import VINNConfig, VINNPolicy


def choose_k(encoder_embeddings: np.ndarray, data: Demos, train_rows: np.ndarray, val_rows: np.ndarray) -> tuple[int, dict]:
    """The k with the lowest offline translation MSE on the validation rows, and the whole k curve.

    encoder_embeddings: (N, D) embeddings of all of data's frames (train and validation rows index into them).
    """
    curve = knn_curve(encoder_embeddings, data.actions, data.episode_ids, train_rows, val_rows, OfflineConfig(gripper_index=GRIPPER_INDEX))
    return int(curve["k"][int(np.argmin(curve["mse"]))]), curve


def fit_vinn(encoder: Encoder | list[Encoder], keys: np.ndarray, data: Demos, train_rows: np.ndarray, val_rows: np.ndarray,
             k: int | None = None, options: dict | None = None, layout: KeyLayout | None = None) -> tuple[VINNPolicy, dict]:
    """VINN over the train rows' keys (the embeddings, or a layout's multi-block keys, computed once for choosing k as
    well), with k chosen on the validation rows unless given; calibrated. Returns (policy, {"k", "k_curve_val"})."""
    chosen, curve = choose_k(keys, data, train_rows, val_rows)
    k = k or chosen
    database = EmbeddingDatabase(keys[train_rows], data.actions[train_rows], data.episode_ids[train_rows],
                                 data.frame_indices[train_rows], gripper_index=GRIPPER_INDEX)
    policy = VINNPolicy(encoder, database, VINNConfig(k=k, gripper_index=GRIPPER_INDEX, **(options or {})), layout)
    policy.calibrate()  # uncertainty reference, saved with the policy
    return policy, {"k": k, "k_curve_val": curve}


def build_encoder(args: BenchmarkArgs, frames: np.ndarray, seed: int = 0) -> tuple[Encoder, dict]:
    """VINN's encoder for training `seed`: BYOL on `frames` (cached), ImageNet weights, or a seeded random init."""
    if args.encoder == "byol":
        return cached_byol(frames, args.byol_config(seed), args.cache_dir, retrain=args.retrain)
    if args.encoder == "imagenet":
        return Encoder.imagenet(args.imagenet_weights, args.encoder_config()), {"cached": False}
    torch.manual_seed(seed)
    return Encoder(args.encoder_config()), {"cached": False}


class SavedPolicies:
    """Fits policies one at a time, saving each under policy_dir/<name> and timing its fit."""

    def __init__(self, policy_dir: Path) -> None:
        self.policy_dir = policy_dir
        self.paths: dict[str, str] = {}
        self.seconds: dict[str, float] = {}

    def fit(self, name: str, fit) -> Any:
        t = time.perf_counter()
        policy = fit()
        self.seconds[name] = round(time.perf_counter() - t, 1)
        self.paths[name] = str(policy.save(self.policy_dir / name))
        return policy


def train_policies(args: BenchmarkArgs, data: Demos, n_train: int, encoder: Encoder, policy_dir: Path,
                   k: int | None = None, seed: int = 0, methods: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Fit `methods` (default: args.methods) on the first n_train episodes (validation: the last val_demos), with
    training seed `seed`; save them.

    Returns:
        {seed, train_episodes, val_episodes, train_seconds, paths, k_by_method, k and k_curve_val (VINN's),
        bc_training (each BC's TrainReport), offline}.
    """
    methods = args.methods if methods is None else methods
    train_rows = np.flatnonzero(data.episode_ids < n_train)
    val_rows = np.flatnonzero(data.episode_ids >= data.num_episodes - args.val_demos)
    saved = SavedPolicies(policy_dir)
    if torch.cuda.is_available():  # embed the demos there (artefacts are saved as CPU tensors; rollouts run on the CPU)
        encoder = encoder.to("cuda")
    vinn = fit_vinn_methods(args, methods, data, train_rows, val_rows, encoder, k or args.k, saved, seed)
    bc_training, bc = fit_bc_methods(args, methods, data, train_rows, val_rows, encoder, saved, seed)
    if "vinn_bc_encoder" in methods:  # kNN over the features BC learned: the gap it leaves to BC is the regression's
        bc_features = feature_encoder(bc)
        policy = saved.fit("vinn_bc_encoder", lambda: fit_vinn(bc_features, bc_features.embed(data.frames), data, train_rows, val_rows,
                                                                 k or args.k)[0])
        vinn["k_by_method"]["vinn_bc_encoder"] = policy.config.k
    fit_replay_methods(args, methods, data, train_rows, saved)
    return {"seed": seed, "train_episodes": n_train, "val_episodes": len(np.unique(data.episode_ids[val_rows])),
            "train_seconds": saved.seconds, "paths": saved.paths, **vinn, "bc_training": bc_training,
            "offline": offline_errors(saved.paths, data, val_rows)}


def fit_vinn_methods(args: BenchmarkArgs, methods: tuple[str, ...], data: Demos, train_rows: np.ndarray, val_rows: np.ndarray,
                     encoder: Encoder, k: int | None, saved: SavedPolicies, seed: int) -> dict[str, Any]:
    """VINN, its variants and kNN on the untrained encoder, each with k chosen on the validation demos (unless k is
    given). Returns {"k_by_method"}, VINN's "k" and "k_curve_val", and with vinn_proprio its "proprio_weight" choice."""
    out: dict[str, Any] = {"k_by_method": {}}
    embeddings: dict[tuple[int, str], np.ndarray] = {}
    trained_views: list[Encoder] = []

    def embed(enc: Encoder, view: str = "image") -> np.ndarray:
        if (id(enc), view) not in embeddings:  # once per encoder and view: the same embeddings choose k and fill the database
            embeddings[id(enc), view] = enc.embed(data.observations()[view])
        return embeddings[id(enc), view]

    def vinn(name: str, enc: Encoder | list[Encoder], keys: np.ndarray, options: dict | None = None,
             layout: KeyLayout | None = None) -> VINNPolicy:
        policy, chosen = fit_vinn(enc, keys, data, train_rows, val_rows, k, options, layout)
        out["k_by_method"][name] = chosen["k"]
        if name == "vinn":
            out.update(chosen)  # VINN's k and validation curve (not a variant's on the same encoder)
        return policy

    def multiview(name: str, options: dict | None = None) -> VINNPolicy:
        views = ("image", *(f"{camera}_image" for camera in args.views))
        if "views" not in out:  # trained (or loaded from the cache) once for vinn_multiview and vinn_plus
            trained_views.extend(view_encoders(args, data, train_rows, encoder, seed))
            out["views"] = {"cameras": [args.camera, *args.views], "shared_encoder": args.shared_view_encoder}
        encoders = trained_views
        each = [embed(enc, view) for enc, view in zip(encoders, views, strict=True)]
        layout = KeyLayout.fit([e[train_rows] for e in each], data.episode_ids[train_rows], views)
        return vinn(name, encoders, layout.key(each), options, layout)

    def with_proprio() -> VINNPolicy:
        proprio = np.concatenate([data.obs[key] for key in PROPRIO_KEYS], axis=1)
        errors, layouts = {}, {}
        for weight in args.proprio_weights:
            layouts[weight] = KeyLayout.fit([embed(encoder)[train_rows]], data.episode_ids[train_rows], ("image",),
                                            proprio[train_rows], PROPRIO_KEYS, weight)
            errors[weight] = float(np.min(choose_k(layouts[weight].key([embed(encoder)], proprio), data, train_rows, val_rows)[1]["mse"]))
        best = min(errors, key=errors.get)
        out["proprio_weight"] = {"chosen": best, "val_mse": {str(w): e for w, e in errors.items()}}
        return vinn("vinn_proprio", encoder, layouts[best].key([embed(encoder)], proprio), layout=layouts[best])

    if "vinn" in methods:
        saved.fit("vinn", lambda: vinn("vinn", encoder, embed(encoder)))
    chunks = {"chunk": args.chunk, "requery": args.requery}
    variants = {"vinn_dominant": {"mode_selection": "dominant"}, "vinn_consistent": {"mode_selection": "consistent"}, "vinn_chunk": chunks}
    for name, options in variants.items():
        if name in methods:
            saved.fit(name, functools.partial(vinn, name, encoder, embed(encoder), options))
    for name, options in (("vinn_multiview", None), ("vinn_plus", chunks)):
        if name in methods:
            saved.fit(name, functools.partial(multiview, name, options))
    if "vinn_proprio" in methods:
        saved.fit("vinn_proprio", with_proprio)
    if "vinn_random" in methods:  # the untrained encoder's neighbours, with their own k
        torch.manual_seed(seed)
        untrained = Encoder(encoder.config).to(encoder.device)
        saved.fit("vinn_random", lambda: vinn("vinn_random", untrained, embed(untrained)))
    return out


def view_encoders(args: BenchmarkArgs, data: Demos, train_rows: np.ndarray, encoder: Encoder, seed: int) -> list[Encoder]:
    """One encoder per view of VINN's multi-view key: VINN's own for the task camera and one of the same kind (BYOL,
    cached) per --views camera, or with --shared-view-encoder one trained on every view's frames together."""
    extra = [data.obs[f"{camera}_image"][train_rows] for camera in args.views]
    if args.shared_view_encoder:
        shared = build_encoder(args, np.concatenate([data.frames[train_rows], *extra]), seed)[0].to(encoder.device)
        return [shared] * (1 + len(extra))
    return [encoder, *(build_encoder(args, frames, seed)[0].to(encoder.device) for frames in extra)]


def fit_bc_methods(args: BenchmarkArgs, methods: tuple[str, ...], data: Demos, train_rows: np.ndarray, val_rows: np.ndarray,
                   encoder: Encoder, saved: SavedPolicies, seed: int) -> tuple[dict[str, dict], BCPolicy | None]:
    """BC (robomimic's recipe), the paper's BC and BC-rep (on `encoder`), early-stopped on the validation demos; cached
    like BYOL, so a rerun on the same data and settings reuses the trained policy. Returns each one's TrainReport, and
    the robomimic-recipe BC (trained for vinn_bc_encoder even when bc itself is not among the methods)."""
    rows = np.concatenate([train_rows, val_rows])
    data_rows = (data.frames[rows], data.actions[rows], data.episode_ids[rows])
    val_eps = np.unique(data.episode_ids[val_rows])
    needed = [n for n in ("bc", "bc_paper", "bc_rep") if n in methods or (n == "bc" and "vinn_bc_encoder" in methods)]
    reports, bc = {}, None
    for name in needed:
        def fit(n: str = name) -> BCPolicy:
            return cached_bc(*data_rows, args.bc_config(n, seed), val_eps, encoder if n == "bc_rep" else None, args.cache_dir, args.retrain)[0]

        policy = saved.fit(name, fit) if name in methods else fit()  # bc only for vinn_bc_encoder's trunk: not saved as a method
        if name in methods:
            reports[name] = {**asdict(policy.report), "converged": policy.report.converged(policy.config.patience), "cap": policy.config.epochs,
                             "patience": policy.config.patience}
        if name == "bc":
            bc = policy
    return reports, bc


def fit_replay_methods(args: BenchmarkArgs, methods: tuple[str, ...], data: Demos, train_rows: np.ndarray, saved: SavedPolicies) -> None:
    """The methods that learn nothing: open-loop replay of the training demos, and random actions."""
    frames, actions, eps = data.frames[train_rows], data.actions[train_rows], data.episode_ids[train_rows]
    if "open_loop" in methods:
        saved.fit("open_loop", lambda: OpenLoopPolicy.fit(frames, actions, eps))
    if "random" in methods:
        saved.fit("random", lambda: RandomPolicy(action_dim=actions.shape[1], seed=args.seed))


def offline_errors(paths: dict[str, str], data: Demos, rows: np.ndarray) -> dict[str, dict[str, float]]:
    """Translation MSE and gripper accuracy of each saved policy on the validation frames."""
    errors = {}
    target = data.actions[rows]
    for name, path in paths.items():
        pred = predict_frames(load_policy(path), data.observations(rows), data.episode_ids[rows])
        errors[name] = {"mse": translation_mse(pred, target), "gripper_accuracy": gripper_accuracy(pred, target, GRIPPER_INDEX)}
    return errors
