"""VINNPolicy: encoder + embedding database + locally weighted regression, behind reset() / act(obs).

    policy = VINNPolicy.fit(frames, actions, episode_ids, encoder=encoder, k=5)
    policy.reset()
    action = policy.act(obs)          # obs: (H, W, 3) uint8 image or a Gymnasium dict observation
    policy.save("runs/door/vinn");  VINNPolicy.load("runs/door/vinn")

More than one camera, and proprioception, go into one search key (vinn_policy.keys):

    policy = VINNPolicy.fit({"image": wrist, "agentview_image": agentview}, actions, episode_ids,
                            encoder=(wrist_encoder, agentview_encoder), proprio=eef_and_fingers, proprio_weight=0.5)
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from vinn_policy.actions import resolve_gripper_index
from vinn_policy.artefact import ArtefactError, load_artefact, require_keys, save_artefact
from vinn_policy.chunks import ChunkPlan
from vinn_policy.database import EmbeddingDatabase, Neighbours, check_rows
from vinn_policy.encoder import Encoder, check_images
from vinn_policy.keys import PROPRIO_KEYS, KeyLayout
from vinn_policy.lwr import opposing_groups, translation, typical_action_norm, weighted_group_mean
from vinn_policy.search import INDEXES, STORAGES, check_choice

MODE_SELECTIONS = ("none", "dominant", "consistent")


@dataclass
class VINNConfig:
    """How a VINN policy turns neighbours into an action."""

    k: int = 5
    """Neighbours blended per query (the paper's robot used 5; offline it found ~10 best)."""
    temperature: float = 1.0
    """T in the softmin weights exp(-d/T); the paper uses 1 on raw ResNet features."""
    image_key: str = "image"
    """Key of the camera image when act() receives a Gymnasium dict observation."""
    gripper_index: int | None = None
    """Action dimension decided by a weighted vote as a binary gripper (-1: the last, actions.GRIPPER_INDEX);
    None blends every dimension."""
    mode_selection: str = "none"
    """When the neighbours' actions split into two opposing groups (lwr.opposing_groups), the paper
    ("none") averages them anyway; "dominant" blends only the heavier group; "consistent" the group whose mean
    points most like the previous step's action (the heavier one on an episode's first step)."""
    index: str = "auto"
    """Search backend: "exact" (numpy/OpenBLAS), "flat" (faiss), "ivf" (faiss, approximate), or "auto" (exact below
    search.AUTO_IVF_FRAMES frames, ivf above). See vinn_policy.search."""
    storage: str = "float32"
    """Embedding storage, "float32" or "float16" (half the memory; its effect on actions is in perf.md)."""
    chunk: int = 1
    """Steps one query plans: each neighbour contributes its demonstration's next `chunk` actions (cut where the
    demonstration ends), blended step by step with the query's softmin weights (gripper voted), and the plan runs
    open-loop; a new query every `chunk` steps, or sooner with `requery`. 1: the paper's VINN, a query every step."""
    requery: float | None = None
    """With chunk > 1: query again as soon as the current frame's weighted distance to the frames the plan expected
    (its neighbours' successors at this step) exceeds `requery` times the calibrated typical neighbour distance.
    None: only when the plan runs out."""

    def __post_init__(self) -> None:
        # numpy scalars are welcome (k = np.argmin(curve) + 1) and stored as Python numbers for config.json
        if not isinstance(self.k, numbers.Integral) or isinstance(self.k, bool) or self.k < 1:
            raise ValueError(f"k must be an integer >= 1; got {self.k!r}.")
        if not (isinstance(self.temperature, numbers.Real) and not isinstance(self.temperature, bool)
                and np.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0; got {self.temperature!r}.")
        self.k, self.temperature = int(self.k), float(self.temperature)
        if self.mode_selection not in MODE_SELECTIONS:
            raise ValueError(f"mode_selection must be one of {MODE_SELECTIONS}; got {self.mode_selection!r}.")
        if not isinstance(self.image_key, str) or not self.image_key:
            raise ValueError(f"image_key must be a non-empty string; got {self.image_key!r}.")
        check_choice("index", self.index, INDEXES)
        check_choice("storage", self.storage, STORAGES)
        if not isinstance(self.chunk, numbers.Integral) or isinstance(self.chunk, bool) or self.chunk < 1:
            raise ValueError(f"chunk must be an integer >= 1; got {self.chunk!r}.")
        self.chunk = int(self.chunk)
        if self.requery is not None and not (isinstance(self.requery, numbers.Real) and not isinstance(self.requery, bool)
                                             and np.isfinite(self.requery) and self.requery > 0):
            raise ValueError(f"requery must be None or a finite number > 0; got {self.requery!r}.")
        if self.requery is not None and self.chunk == 1:
            raise ValueError(f"requery={self.requery!r} needs chunk > 1: with chunk=1 every step is a new query already.")
        if self.chunk > 1 and self.mode_selection != "none":
            raise ValueError("mode_selection works per query step; it cannot be combined with chunk > 1 (yet).")


@dataclass
class Uncertainty:
    """How far out of its depth VINN is for each of B queries; each part is ~1 for a typical in-distribution frame.

    distance: softmin-weighted mean neighbour distance / its median over the database's own frames when each
        is searched among the other demonstrations (leave one episode out).
    spread: weighted standard deviation of the neighbours' (non-gripper) actions / the same median.
    score: distance + spread.
    """

    distance: NDArray[np.float32]  # (B,)
    spread: NDArray[np.float32]  # (B,)
    score: NDArray[np.float32]  # (B,)


def neighbour_stats(nb: Neighbours, gripper_index: int | None) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """(B,) weighted mean distance and (B,) weighted action spread (gripper excluded) of each query's neighbours."""
    w = nb.weights[..., None]  # (B, k, 1)
    acts = translation(nb.neighbour_actions, gripper_index)
    mean = (w * acts).sum(1, keepdims=True)  # (B, 1, A')
    spread = np.sqrt((w * (acts - mean) ** 2).sum((1, 2)))
    return (nb.weights * nb.distances).sum(1).astype(np.float32), spread.astype(np.float32)


def check_reference(reference: object) -> dict[str, float]:
    """An uncertainty reference as {"distance": d, "spread": s}, both finite and > 0 (they divide), else ValueError."""
    ok = isinstance(reference, dict) and all(
        isinstance(reference.get(key), numbers.Real) and np.isfinite(reference[key]) and reference[key] > 0
        for key in ("distance", "spread"))
    if not ok:
        raise ValueError(f"The uncertainty reference must be {{'distance': d, 'spread': s}} with both finite and > 0; got "
                         f"{reference!r}. Call calibrate() to measure it on the database.")
    return {"distance": float(reference["distance"]), "spread": float(reference["spread"])}


def extract_images(obs: object, image_key: str) -> NDArray[np.uint8]:
    """The image(s) in an observation: an array, or a dict holding one under `image_key`."""
    if isinstance(obs, dict):
        if image_key not in obs:
            raise ValueError(f"Observation dict has no image key {image_key!r}; keys: {sorted(obs)}. Set image_key.")
        obs = obs[image_key]
    return check_images(obs)


class VINNPolicy:
    """Visual imitation by nearest neighbours (Pari et al., 2022)."""

    def __init__(self, encoder: Encoder | Sequence[Encoder], database: EmbeddingDatabase, config: VINNConfig | None = None,
                 layout: KeyLayout | None = None) -> None:
        """encoder: one Encoder, or one per view of `layout` (the same object repeated: a shared encoder).
        layout: how several views (and proprioception) form the database's keys; None: one view, the paper's VINN."""
        self.encoders = (encoder,) if isinstance(encoder, Encoder) else tuple(encoder)
        self.encoder = self.encoders[0]
        self.layout = layout
        self.database = database
        config = config or VINNConfig(gripper_index=database.gripper_index, index=database.index_kind, storage=database.storage)
        # -1: the last dimension, resolved as the database resolves it
        self.config = replace(config, gripper_index=resolve_gripper_index(config.gripper_index, database.action_dim))
        views = layout.views if layout is not None else (self.config.image_key,)
        if len(self.encoders) != len(views) or not all(isinstance(e, Encoder) for e in self.encoders):
            raise ValueError(f"Expected one Encoder per view {views}; got {len(self.encoders)} encoder(s).")
        if layout is not None and views[0] != self.config.image_key:
            raise ValueError(f"The first view {views[0]!r} must be config.image_key ({self.config.image_key!r}).")
        key_dim = sum(e.feature_dim for e in self.encoders) + (len(layout.proprio_mean) if layout is not None else 0)
        if database.embedding_dim != key_dim:
            raise ValueError(f"Database embeddings are {database.embedding_dim}-d but the encoder(s) and proprioception give {key_dim}-d keys.")
        if database.gripper_index != self.config.gripper_index:
            raise ValueError(f"config.gripper_index ({self.config.gripper_index}) must match the database's "
                             f"gripper_index ({database.gripper_index}).")
        if (database.index_kind, database.storage) != (self.config.index, self.config.storage):
            raise ValueError(f"config (index={self.config.index!r}, storage={self.config.storage!r}) must match the database's "
                             f"(index={database.index_kind!r}, storage={database.storage!r}).")
        self.last_neighbours: Neighbours | None = None
        self.reference: dict[str, float] | None = None  # uncertainty normalisers (see calibrate)
        self._previous: NDArray[np.float32] | None = None  # last actions, for mode_selection="consistent"
        self._min_norm: float | None = None  # smallest group motion that counts as a mode (from the database)
        self.plan: ChunkPlan | None = None  # with chunk > 1: the plans being executed

    @classmethod
    def fit(
        cls,
        frames: NDArray[np.uint8] | dict[str, NDArray[np.uint8]],
        actions: NDArray[np.floating],
        episode_ids: NDArray[np.integer],
        encoder: Encoder | Sequence[Encoder],
        k: int = 5,
        temperature: float = 1.0,
        gripper_index: int | None = None,
        mode_selection: str = "none",
        image_key: str = "image",
        frame_indices: NDArray[np.integer] | None = None,
        batch_size: int = 256,
        index: str = "auto",
        storage: str = "float32",
        chunk: int = 1,
        requery: float | None = None,
        proprio: NDArray[np.floating] | None = None,
        proprio_keys: Sequence[str] = PROPRIO_KEYS,
        proprio_weight: float = 0.0,
    ) -> VINNPolicy:
        """Embed every demonstration frame once and build the policy (no training happens here).

        Args:
            frames: (N, H, W, 3) uint8 demonstration images, or {observation key: (N, H, W, 3)} for several views
                (the first key becomes image_key).
            actions: (N, A) the action taken at each frame.
            episode_ids: (N,) demonstration each frame belongs to (integer-valued).
            encoder: the image encoder (e.g. from `train_byol`); with several views one per view, or one shared.
            k, temperature, gripper_index, mode_selection, image_key, index, storage, chunk, requery: the VINNConfig
                fields (image_key: the observation key act() reads images from).
            proprio, proprio_keys, proprio_weight: with proprio_weight > 0, the (N, P) proprioception of each frame
                (the observation keys `proprio_keys` concatenated) joins the key as its own block (vinn_policy.keys).

        Everything cheap (config, frames, actions, ids) is validated before the frames are embedded.
        """
        views = dict(frames) if isinstance(frames, dict) else {image_key: frames}
        if not views:
            raise ValueError("frames is an empty dict; expected {observation key: (N, H, W, 3) images}.")
        encoders = [encoder] * len(views) if isinstance(encoder, Encoder) else list(encoder)
        if len(encoders) != len(views):
            raise ValueError(f"Got {len(encoders)} encoders for the views {list(views)}; expected one per view or one shared.")
        multi = len(views) > 1 or proprio_weight != 0
        config = VINNConfig(k=k, temperature=temperature, gripper_index=gripper_index, mode_selection=mode_selection,
                            image_key=next(iter(views)), index=index, storage=storage, chunk=chunk, requery=requery)
        views = {key: check_images(images) for key, images in views.items()}
        for key, images in views.items():
            if len(images) != len(actions):
                raise ValueError(f"Got {len(images)} {key} frames but {len(actions)} actions; expected one action per frame.")
        actions, episode_ids, frame_indices, _ = check_rows(actions, episode_ids, frame_indices, gripper_index)
        if proprio_weight and proprio is None:
            raise ValueError("proprio_weight > 0 needs proprio=, the (N, P) proprioception of each frame.")
        embeddings = [enc.embed(images, batch_size=batch_size) for enc, images in zip(encoders, views.values(), strict=True)]
        layout = None
        if multi:
            layout = KeyLayout.fit(embeddings, episode_ids, tuple(views), proprio, proprio_keys, proprio_weight)
            keys = layout.key(embeddings, proprio)
        else:
            keys = embeddings[0]
        database = EmbeddingDatabase(keys, actions, episode_ids, frame_indices, gripper_index, index, storage)
        return cls(encoders, database, config, layout)

    @classmethod
    def fit_file(
        cls,
        path: str | Path,
        encoder: Encoder,
        *,
        k: int = 5,
        temperature: float = 1.0,
        gripper_index: int | None = None,
        mode_selection: str = "none",
        image_key: str = "image",
        index: str = "auto",
        storage: str = "float32",
        demo_image_key: str | None = None,
        max_episodes: int | None = None,
        batch_size: int = 256,
    ) -> VINNPolicy:
        """`fit` on a demonstration file, streamed: frames are read and embedded batch_size at a time and only
        their embeddings kept (2 KB per frame for ResNet-18), so the file may be larger than RAM.

        Args:
            k, temperature, gripper_index, mode_selection, image_key, index, storage: as in `fit` (image_key is
                the observation key act() reads, not the file's).
            demo_image_key: the file's obs dataset holding the camera images (default: the one the file
                records, else its only `*_image` key).
        """
        from vinn_policy.demos.dataset import iter_demo_batches, validate_file

        config = VINNConfig(k=k, temperature=temperature, gripper_index=gripper_index, mode_selection=mode_selection,
                            image_key=image_key, index=index, storage=storage)
        resolve_gripper_index(gripper_index, validate_file(path, demo_image_key)["action_dim"])  # before any embedding
        parts = [(encoder.embed(b.frames, batch_size=batch_size), b.actions, b.episode_ids, b.frame_indices)
                 for b in iter_demo_batches(path, batch_size, demo_image_key, max_episodes)]
        emb, actions, episodes, frames = (np.concatenate(x) for x in zip(*parts, strict=True))
        return cls(encoder, EmbeddingDatabase(emb, actions, episodes, frames, gripper_index, index, storage), config)

    def calibrate(self, max_queries: int = 2000) -> dict[str, float]:
        """The database's typical neighbour distance and action spread (leave one episode out), for `uncertainty`."""
        d, spread = neighbour_stats(self.database.leave_one_episode_out(self.config.k, self.config.temperature, max_queries),
                                    self.config.gripper_index)
        eps = 1e-8
        self.reference = check_reference({"distance": max(float(np.median(d)), eps), "spread": max(float(np.median(spread)), eps)})
        return self.reference

    def uncertainty(self, neighbours: Neighbours | None = None) -> Uncertainty:
        """Uncertainty of the last act() (or of `neighbours`); calibrates on first use."""
        nb = neighbours or self.last_neighbours
        if nb is None:
            raise ValueError("No neighbours yet: call act() (or pass a Neighbours) before uncertainty().")
        ref = self.calibrate() if self.reference is None else check_reference(self.reference)
        d, spread = neighbour_stats(nb, self.config.gripper_index)
        d, spread = d / ref["distance"], spread / ref["spread"]
        return Uncertainty(d, spread, d + spread)

    def add_demos(self, frames: NDArray[np.uint8] | dict[str, NDArray[np.uint8]], actions: NDArray[np.floating],
                  episode_ids: NDArray[np.integer], frame_indices: NDArray[np.integer] | None = None, batch_size: int = 256,
                  proprio: NDArray[np.floating] | None = None) -> None:
        """Add demonstrations to the database: they are embedded and used from the next act(); no retraining.
        A multi-view policy takes {view: frames} (and proprio= if its key has that block), as `fit` does."""
        obs = frames if isinstance(frames, dict) else {self.config.image_key: frames}
        images, proprio = self._read(obs, batched=True, proprio=proprio)
        if len(images[0]) != len(actions):
            raise ValueError(f"Got {len(images[0])} frames but {len(actions)} actions; expected one action per frame.")
        actions, episode_ids, frame_indices, _ = check_rows(actions, episode_ids, frame_indices)  # before embedding
        keys = self._keys(images, proprio, batch_size=batch_size)
        self.database = self.database.extend(keys, actions, episode_ids, frame_indices)
        self.reference = self._min_norm = None  # the database changed: recalibrate on next use
        self.plan = None  # a chunk planned on the old database queries afresh

    def remove_episodes(self, episode_ids: object) -> None:
        """Forget these demonstrations (episode ids) from the next act() on."""
        self.database = self.database.without_episodes(episode_ids)
        self.reference = self._min_norm = None
        self.plan = None  # its rows numbered the old database (and may be the removed demonstrations')

    def reset(self, seed: int | None = None) -> None:
        """Start an episode. VINN is memoryless and deterministic (with mode_selection="consistent" it remembers
        the previous action); this clears the last neighbour set and that memory."""
        self.last_neighbours = None
        self._previous = None
        self.plan = None

    def act(self, obs: object) -> NDArray[np.float32]:
        """One observation ((H, W, 3) uint8 image or dict) -> float32 action of shape (A,)."""
        return self._act(*self._read(obs, batched=False))[0]

    def act_batch(self, obs_batch: object) -> NDArray[np.float32]:
        """A batch of observations ((B, H, W, 3) uint8 or a dict of batched arrays) -> float32 (B, A)."""
        return self._act(*self._read(obs_batch, batched=True))

    def _read(self, obs: object, batched: bool, proprio: NDArray[np.floating] | None = None
              ) -> tuple[list[NDArray[np.uint8]], NDArray[np.float64] | None]:
        """Each view's (B, H, W, 3) images and the (B, P) proprioception (None without that block) of an observation
        (`proprio`, if given, instead of the observation's)."""
        if self.layout is None:
            images, proprio = [extract_images(obs, self.config.image_key)], None
        elif not isinstance(obs, dict):
            raise ValueError(f"This policy's key combines {self.layout.views}{' and proprioception' if self.layout.proprio_keys else ''}; "
                             f"act() needs a dict observation holding them; got {type(obs).__name__}.")
        else:
            images = [extract_images(obs, view) for view in self.layout.views]
            if not self.layout.proprio_keys:
                proprio = None
            elif proprio is None:
                proprio = self.layout.proprio_from(obs, batched)
            else:
                proprio = np.asarray(proprio, np.float64)
        sizes = {len(i) for i in images} | ({len(proprio)} if proprio is not None else set())
        if len(sizes) != 1:
            raise ValueError(f"The observation's views and proprioception hold different numbers of entries: {sorted(sizes)}.")
        if not batched and sizes != {1}:
            raise ValueError(f"act() takes one observation; got a batch of {sizes.pop()} (use act_batch).")
        return images, proprio

    def _keys(self, images: list[NDArray[np.uint8]], proprio: NDArray[np.float64] | None, where: NDArray[np.bool_] | None = None,
              batch_size: int = 256) -> NDArray[np.float32]:
        """The search keys of the observations (those at `where`): the embedding, or the layout's multi-block key."""
        if where is not None:
            images = [i[where] for i in images]
            proprio = None if proprio is None else proprio[where]
        embeddings = [encoder.embed(i, batch_size=batch_size) for encoder, i in zip(self.encoders, images, strict=True)]
        return embeddings[0] if self.layout is None else self.layout.key(embeddings, proprio)

    def _act(self, images: list[NDArray[np.uint8]], proprio: NDArray[np.float64] | None) -> NDArray[np.float32]:
        if self.config.chunk > 1:
            return self._act_from_plans(images, proprio)
        result = self.database.query(self._keys(images, proprio), self.config.k, self.config.temperature)
        if self.config.mode_selection != "none":
            result = self._select_mode(result)
        self.last_neighbours = result
        self._previous = result.actions
        return result.actions.copy()  # the caller's to change: last_neighbours and mode selection keep theirs

    def _act_from_plans(self, images: list[NDArray[np.uint8]], proprio: NDArray[np.float64] | None) -> NDArray[np.float32]:
        """The next step of each query's plan, querying afresh where a plan has run out (or drifted: `requery`).
        Without `requery`, steps inside a plan skip the encoder and the search altogether."""
        b, plan = len(images[0]), self.plan
        keys = None
        if plan is None or len(plan.step) != b:
            due = np.ones(b, bool)
        else:
            plan.step += 1
            due = plan.step >= plan.length
            if self.config.requery is not None and not due.all():
                keys = self._keys(images, proprio)
                due |= self.drift(keys) > self.config.requery
        if due.any():
            queries = keys[due] if keys is not None else self._keys(images, proprio, where=due)
            fresh = ChunkPlan.follow(self.database, self.database.query(queries, self.config.k, self.config.temperature), self.config.chunk)
            plan = fresh if due.all() else plan.replaced(due, fresh)
        self.plan = plan
        actions = plan.actions[np.arange(b), plan.step]
        self.last_neighbours = replace(plan.neighbours, actions=actions)
        return actions.copy()

    def drift(self, keys: NDArray[np.float32]) -> NDArray[np.float32]:
        """(B,) weighted distance of each query's current key to the frames its plan expected at this step, over the
        calibrated typical neighbour distance (~1 while the scene follows the demonstrations)."""
        ref = self.calibrate() if self.reference is None else check_reference(self.reference)
        return (self.plan.distance_to_expected(self.database, keys) / ref["distance"]).astype(np.float32)

    def _select_mode(self, nb: Neighbours) -> Neighbours:
        """Re-blend queries whose neighbours split into opposing groups from one group only (see VINNConfig)."""
        moves = translation(nb.neighbour_actions, self.config.gripper_index)  # (B, k, A')
        if self._min_norm is None:
            self._min_norm = typical_action_norm(self.database.actions.numpy(), self.database.gripper_index) / 4  # as in the multimodality diagnostic
        flags, heavy = opposing_groups(moves, nb.weights, self._min_norm)
        if not flags.any():
            return nb
        keep = np.where(flags[:, None], heavy, True)
        if self.config.mode_selection == "consistent" and self._previous is not None and len(self._previous) == len(keep):
            prev = translation(self._previous, self.config.gripper_index)  # (B, A')

            def cosine(member: NDArray[np.bool_]) -> NDArray[np.float64]:
                mean = weighted_group_mean(moves, nb.weights, member)
                return (mean * prev).sum(1) / np.maximum(np.linalg.norm(mean, axis=1) * np.linalg.norm(prev, axis=1), 1e-12)

            switch = flags & (cosine(~heavy) > cosine(heavy))
            keep = np.where(switch[:, None], ~heavy, keep)
        w = nb.weights * keep
        w = (w / w.sum(1, keepdims=True)).astype(np.float32)
        actions = self.database.combine(torch.from_numpy(w), torch.from_numpy(nb.indices)).numpy()
        return replace(nb, actions=actions, weights=w)

    def save(self, path: str | Path) -> Path:
        """Save as one directory: model.safetensors (encoder + database) and config.json, atomically."""
        distinct = list({id(e): e for e in self.encoders}.values())  # a shared encoder is saved once
        meta = {
            **self.encoder.meta(),
            "policy": asdict(self.config),
            "action_dim": self.database.action_dim,
            "database_size": len(self.database),
            "uncertainty_reference": self.reference,
        }
        if self.layout is not None:
            meta |= {"key_layout": self.layout.meta(), "view_encoders": [[id(e) for e in distinct].index(id(e)) for e in self.encoders],
                     "extra_encoders": [e.meta() for e in distinct[1:]]}
        tensors = {k: v for j, e in enumerate(distinct) for k, v in e.state_tensors(_encoder_prefix(j)).items()}
        return save_artefact(path, "vinn_policy", {**tensors, **self.database.tensors()}, meta)

    @classmethod
    def load(cls, path: str | Path) -> VINNPolicy:
        """Load a saved policy; raises ArtefactError for a missing, foreign, old or corrupted artefact."""
        tensors, meta = load_artefact(path, "vinn_policy")
        require_keys(tensors, ["db.embeddings", "db.actions", "db.episode_ids", "db.frame_indices"], path)
        try:
            config = VINNConfig(**meta["policy"])
        except (KeyError, TypeError, ValueError) as e:
            raise ArtefactError(f"{path}: invalid policy metadata ({e}).") from e
        encoders, layout = [Encoder.from_saved(tensors, meta, path)], None
        if meta.get("key_layout") is not None:
            try:
                layout = KeyLayout(**meta["key_layout"])
                encoders += [Encoder.from_saved(tensors, m, path, prefix=_encoder_prefix(j + 1)) for j, m in enumerate(meta["extra_encoders"])]
                encoders = [encoders[j] for j in meta["view_encoders"]]
            except (KeyError, TypeError, ValueError, IndexError) as e:
                raise ArtefactError(f"{path}: invalid key layout metadata ({e}).") from e
        database = EmbeddingDatabase.from_tensors(tensors, config.gripper_index, index=config.index)
        if database.storage != config.storage:
            raise ArtefactError(f"{path}: embeddings are stored as {database.storage} but config.json says {config.storage}.")
        if database.action_dim != meta.get("action_dim") or len(database) != meta.get("database_size"):
            raise ArtefactError(f"{path}: database shape disagrees with config.json.")
        try:
            policy = cls(encoders, database, config, layout)
        except ValueError as e:
            raise ArtefactError(f"{path}: {e}") from e
        if meta.get("uncertainty_reference") is not None:
            try:
                policy.reference = check_reference(meta["uncertainty_reference"])
            except ValueError as e:
                raise ArtefactError(f"{path}: {e}") from e
        return policy


def _encoder_prefix(j: int) -> str:
    """Tensor-name prefix of a policy's j-th distinct encoder ("encoder." for the first, as single-view artefacts have)."""
    return "encoder." if j == 0 else f"encoder_{j}."
