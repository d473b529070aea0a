"""Demonstration files in the robomimic HDF5 layout: writing (atomic, appendable) and validated loading.

    data                      attrs: total (frames), env_args (JSON)
    data/demo_<i>             attrs: num_samples, seed (ours)
        obs/<camera>_image    uint8 (T, H, W, 3)
        obs/<key>             float32 (T, n) proprioception and object state
        actions               float32 (T, A)  the expert's intended actions (labels)
        actions_executed      float32 (T, A)  what was sent to the env (labels + collection noise; ours)
        rewards, dones        (T,)
        states                float64 (T, S)  flattened MuJoCo state

`load_demos` also reads robomimic's own image datasets (e.g. lift/ph/image.hdf5).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
from numpy.typing import NDArray

from vinn_policy.artefact import usual_permissions

if TYPE_CHECKING:  # only a type: reading demos must not import the benchmark harness
    from vinn_policy.harness.rollout import Episode


class DemoFileError(ValueError):
    """A demonstration file is missing, truncated, or not in the expected layout."""


@dataclass
class Demos:
    """Frames and actions ready for VINNPolicy.fit. N = frames over all episodes."""

    frames: NDArray[np.uint8]  # (N, H, W, 3)
    actions: NDArray[np.float32]  # (N, A)
    episode_ids: NDArray[np.int64]  # (N,) index of the demo in the file order
    frame_indices: NDArray[np.int64]  # (N,)
    image_key: str
    env_args: dict[str, Any]
    seeds: list[int | None]  # per episode (None for files that do not record it)
    obs: dict[str, NDArray] = field(default_factory=dict)
    """Further observation arrays by key, one row per frame (e.g. agentview_image, robot0_eef_pos): load_demos(obs_keys=)."""

    def observations(self, rows: NDArray[np.integer] | slice = slice(None)) -> dict[str, NDArray]:
        """The rows as the env's observation dict: the camera's frames under "image", the further arrays under their keys."""
        return {"image": self.frames[rows], **{key: values[rows] for key, values in self.obs.items()}}

    @property
    def num_episodes(self) -> int:
        return len(self.seeds)

    def select(self, episodes: Iterable[int]) -> Demos:
        """The subset of episodes (by index), renumbered 0.. in the given order."""
        episodes = list(episodes)
        rows = np.concatenate([np.flatnonzero(self.episode_ids == e) for e in episodes]) if episodes else np.zeros(0, int)
        remap = {e: i for i, e in enumerate(episodes)}
        return Demos(self.frames[rows], self.actions[rows], np.array([remap[e] for e in self.episode_ids[rows]], np.int64),
                     self.frame_indices[rows], self.image_key, self.env_args, [self.seeds[e] for e in episodes],
                     {key: values[rows] for key, values in self.obs.items()})


def _demo_names(data: h5py.Group) -> list[str]:
    names = [n for n in data if re.fullmatch(r"demo_\d+", n)]
    return sorted(names, key=lambda n: int(n.split("_")[1]))


def _write_episode(group: h5py.Group, episode: Episode) -> None:
    obs = group.create_group("obs")
    for key, value in episode.obs.items():
        kwargs = {"compression": "lzf", "chunks": (1, *value.shape[1:])} if value.dtype == np.uint8 else {}
        obs.create_dataset(key, data=value, **kwargs)
    for name in ("actions", "executed", "rewards", "dones", "states"):
        group.create_dataset("actions_executed" if name == "executed" else name, data=getattr(episode, name))
    group.attrs["num_samples"] = episode.steps
    group.attrs["seed"] = episode.seed


def write_demos(path: str | Path, episodes: Iterable[Episode], env_args: dict[str, Any], append: bool = False) -> int:
    """Write recorded episodes to `path` atomically; with append=True add them after the existing ones.

    The file is built (or copied and extended) under a temporary name and renamed into place, so a crash
    mid-write leaves any existing file untouched. Appending requires the same env_args.

    Returns:
        The number of demos in the file afterwards.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not append:
        raise FileExistsError(f"{path} exists; pass append=True (--append) to add demos or remove it first.")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if append and path.exists():
            existing = validate_file(path)
            if existing["env_args"] != env_args:
                raise DemoFileError(f"Cannot append to {path}: it was collected with env_args {existing['env_args']}, not {env_args}.")
            shutil.copyfile(path, tmp)
        with h5py.File(tmp, "a" if append and path.exists() else "w") as f:
            data = f.require_group("data")
            count = len(_demo_names(data))
            total = int(data.attrs.get("total", 0))
            for episode in episodes:
                _write_episode(data.create_group(f"demo_{count}"), episode)
                count += 1
                total += episode.steps
            data.attrs["total"] = total
            data.attrs["env_args"] = json.dumps(env_args)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        usual_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def _open(path: str | Path) -> h5py.File:
    path = Path(path)
    if not path.is_file():
        raise DemoFileError(f"Demonstration file {path} not found.")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise DemoFileError(f"{path} is not a readable HDF5 file (truncated or corrupted?): {e}") from e


def _image_key(obs: h5py.Group, env_args: dict[str, Any], requested: str | None, where: str) -> str:
    if requested is not None:
        if requested not in obs:
            raise DemoFileError(f"{where}/obs has no {requested!r}; available: {sorted(obs)}.")
        return requested
    recorded = env_args.get("image_key")
    if isinstance(recorded, str) and recorded in obs:
        return recorded
    images = sorted(k for k in obs if k.endswith("_image"))
    if len(images) != 1:
        raise DemoFileError(f"{where}/obs has image keys {images}; pass image_key= to choose one.")
    return images[0]


def validate_file(path: str | Path, image_key: str | None = None) -> dict[str, Any]:
    """Check the layout of every demo without loading images; return a summary (demos, frames, env_args)."""
    with _open(path) as f:
        return _validate(f, path, image_key)


def _validate(f: h5py.File, path: str | Path, image_key: str | None) -> dict[str, Any]:
    if "data" not in f:
        raise DemoFileError(f"{path} has no 'data' group; expected the robomimic layout data/demo_<i>/....")
    data = f["data"]
    try:
        env_args = json.loads(data.attrs.get("env_args", "{}"))
    except json.JSONDecodeError as e:
        raise DemoFileError(f"{path}: data.attrs['env_args'] is not JSON ({e}).") from e
    names = _demo_names(data)
    if not names:
        raise DemoFileError(f"{path} holds no demos (expected groups data/demo_0, data/demo_1, ...).")
    key, action_dim, frames = None, None, 0
    for name in names:
        demo, where = data[name], f"{path}:data/{name}"
        for required in ("obs", "actions"):
            if required not in demo:
                raise DemoFileError(f"{where} lacks '{required}'.")
        key = _image_key(demo["obs"], env_args, image_key or key, where)
        images, actions = demo["obs"][key], demo["actions"]
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise DemoFileError(f"{where}/obs/{key} must be uint8 (T, H, W, 3); got {images.dtype} {images.shape}.")
        if actions.ndim != 2 or actions.dtype.kind != "f":
            raise DemoFileError(f"{where}/actions must be float (T, A); got {actions.dtype} {actions.shape}.")
        if len(actions) != len(images) or demo.attrs.get("num_samples", len(actions)) != len(actions):
            raise DemoFileError(
                f"{where}: {len(images)} images, {len(actions)} actions, num_samples={demo.attrs.get('num_samples')}; expected equal."
            )
        if action_dim not in (None, actions.shape[1]):
            raise DemoFileError(f"{where}/actions has {actions.shape[1]} dims; earlier demos have {action_dim}.")
        action_dim = actions.shape[1]
        frames += len(actions)
    return {"demos": len(names), "frames": frames, "image_key": key, "action_dim": action_dim, "env_args": env_args}


def load_demos(path: str | Path, image_key: str | None = None, max_episodes: int | None = None,
               obs_keys: Sequence[str] = ()) -> Demos:
    """Load and validate a demonstration file (ours or robomimic's image datasets).

    Args:
        image_key: obs dataset with the camera images; default: the file's recorded key, else its only
            `*_image` key.
        max_episodes: keep only the first episodes (in demo number order).
        obs_keys: further obs datasets to load into Demos.obs (e.g. another camera's agentview_image).

    Raises:
        DemoFileError: missing file, truncated HDF5, missing keys, wrong dtypes or shapes, NaN actions.
    """
    with _open(path) as f:
        summary = _validate(f, path, image_key)
        key = summary["image_key"]
        names = _demo_names(f["data"])[:max_episodes]
        frames, actions, ids, idx, seeds = [], [], [], [], []
        try:
            for e, name in enumerate(names):
                demo = f["data"][name]
                frames.append(demo["obs"][key][()])
                actions.append(demo["actions"][()].astype(np.float32))
                ids.append(np.full(len(actions[-1]), e, np.int64))
                idx.append(np.arange(len(actions[-1]), dtype=np.int64))
                seeds.append(int(demo.attrs["seed"]) if "seed" in demo.attrs else None)
        except OSError as e:
            raise DemoFileError(f"{path}: reading {name} failed (truncated file?): {e}") from e
    actions_all = np.concatenate(actions)
    if not np.isfinite(actions_all).all():
        raise DemoFileError(f"{path}: actions contain NaN or inf.")
    extra = load_obs(path, obs_keys, max_episodes) if obs_keys else {}
    return Demos(np.concatenate(frames), actions_all, np.concatenate(ids), np.concatenate(idx), key, summary["env_args"], seeds, extra)


def load_obs(path: str | Path, keys: Sequence[str], max_episodes: int | None = None) -> dict[str, NDArray]:
    """Other observation arrays (e.g. the privileged object state experts used), concatenated over the first
    demos in load_demos' frame order: key -> (N, ...)."""
    with _open(path) as f:
        _validate(f, path, None)
        names = _demo_names(f["data"])[:max_episodes]
        for name in names:
            missing = [k for k in keys if k not in f["data"][name]["obs"]]
            if missing:
                raise DemoFileError(f"{path}: data/{name}/obs has no {missing}; available: {sorted(f['data'][name]['obs'])}.")
        return {key: np.concatenate([f["data"][n]["obs"][key][()] for n in names]) for key in keys}


@dataclass
class DemoBatch:
    """Up to batch_size consecutive frames of one demonstration (see iter_demo_batches)."""

    frames: NDArray[np.uint8]  # (B, H, W, 3)
    actions: NDArray[np.float32]  # (B, A)
    episode_ids: NDArray[np.int64]  # (B,)
    frame_indices: NDArray[np.int64]  # (B,)


def iter_demo_batches(path: str | Path, batch_size: int = 256, image_key: str | None = None,
                      max_episodes: int | None = None) -> Iterator[DemoBatch]:
    """A validated demonstration file read slice by slice: at most batch_size frames are in memory at once,
    so a database can be built from a file larger than RAM. Episode ids and order are those of load_demos."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
    with _open(path) as f:
        key = _validate(f, path, image_key)["image_key"]
        for e, name in enumerate(_demo_names(f["data"])[:max_episodes]):
            demo = f["data"][name]
            for start in range(0, len(demo["actions"]), batch_size):
                try:
                    frames = demo["obs"][key][start : start + batch_size]
                    actions = demo["actions"][start : start + batch_size].astype(np.float32)
                except OSError as err:
                    raise DemoFileError(f"{path}: reading {name} failed (truncated file?): {err}") from err
                if not np.isfinite(actions).all():
                    raise DemoFileError(f"{path}: actions of {name} contain NaN or inf.")
                rows = np.arange(start, start + len(actions), dtype=np.int64)
                yield DemoBatch(frames, actions, np.full(len(rows), e, np.int64), rows)
