"""Cached pipeline stages shared by the benchmark scripts: demonstrations, BYOL encoders and BC baselines.

Each stage is keyed by what determines it (task + collection settings; frames + BYOL config; frames,
actions, episodes, BC config and, for BC-rep, the encoder's weights), reuses a
validated artefact when one exists, and writes new ones atomically, so a crash never leaves a corrupt
cache behind.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from vinn_policy.demos.dataset import DemoFileError, Demos, load_demos, validate_file

from vinn_policy.artefact import ArtefactError, atomic_write_text
from vinn_policy.baselines.bc import BCConfig, BCPolicy
from vinn_policy.baselines.bc import result_settings as bc_settings
from vinn_policy.byol import BYOLConfig, train_byol
from vinn_policy.byol import result_settings as byol_settings
from vinn_policy.encoder import Encoder


def demo_path(task: str, data_dir: str | Path = "data", image_size: int = 84, camera: str | None = None,
              extra_cameras: tuple[str, ...] = ()) -> Path:
    """data/<task>-<version>[_<camera>][+<extra camera>...]_<image_size>px.hdf5 (e.g. data/door-v1_84px.hdf5,
    data/push-v1+agentview_84px.hdf5), the camera named when it is not the task's own: each env version keeps its
    own demonstrations."""
    from vinn_policy.envs import env_id, resolve_camera, task_spec

    camera = resolve_camera(task, camera)
    versioned = f"{task}-{env_id(task).rpartition('-')[2]}"
    name = versioned if camera == task_spec(task).camera else f"{versioned}_{camera}"
    name += "".join(f"+{extra}" for extra in extra_cameras)
    return Path(data_dir) / f"{name}_{image_size}px.hdf5"


def ensure_demos(task: str, episodes: int, data_dir: str | Path = "data", noise: float = 0.1, image_size: int = 84,
                 workers: int = 2, progress: bool = True, camera: str | None = None, extra_cameras: tuple[str, ...] = (),
                 obs_keys: tuple[str, ...] = ()) -> Demos:
    """The first `episodes` demos of `demo_path(...)`, collecting (or appending) what is missing: the camera's frames,
    and the further observations `obs_keys` (e.g. an extra camera's "agentview_image", or "robot0_eef_pos")."""
    from vinn_policy.demos.collect import CollectArgs, collect
    from vinn_policy.demos.experts import EXPERTS
    from vinn_policy.envs import env_id, resolve_camera, task_variation

    camera = resolve_camera(task, camera)
    path = demo_path(task, data_dir, image_size, camera, extra_cameras)
    have = 0
    if path.exists():
        try:
            summary = validate_file(path)
            if summary["env_args"].get("env_name") != env_id(task):
                raise DemoFileError(f"{path} was collected on {summary['env_args'].get('env_name')}, not {env_id(task)}")
            if summary["env_args"].get("expert") != EXPERTS[task].name():
                raise DemoFileError(f"{path} was made by expert {summary['env_args'].get('expert')}, not {EXPERTS[task].name()}")
            if summary["env_args"].get("variation", {}) != task_variation(task):
                raise DemoFileError(f"{path} was drawn from the variation {summary['env_args'].get('variation', 'unrecorded')}, "
                                    f"not {task}'s {task_variation(task)}")
            if summary["env_args"].get("action_noise") != noise:
                raise DemoFileError(f"{path} was collected with noise {summary['env_args'].get('action_noise')}, not {noise}")
            if summary["image_key"] != f"{camera}_image":
                raise DemoFileError(f"{path} holds {summary['image_key']} frames, not {camera}_image")
            recorded = tuple(summary["env_args"].get("env_kwargs", {}).get("extra_cameras", ()))
            if recorded != tuple(extra_cameras):
                raise DemoFileError(f"{path} records the extra cameras {recorded}, not {tuple(extra_cameras)}")
            have = summary["demos"]
        except DemoFileError as e:
            raise DemoFileError(f"Cached demonstrations are unusable ({e}); delete {path} to collect afresh.") from e
    if have < episodes:
        collect(CollectArgs(task=task, episodes=episodes - have, out=str(path), noise=noise, image_size=image_size,
                            camera=camera, extra_cameras=tuple(extra_cameras), workers=workers, append=have > 0), progress=progress)
    return load_demos(path, max_episodes=episodes, obs_keys=obs_keys)


def frames_digest(frames: NDArray[np.uint8]) -> str:
    digest = hashlib.sha256()
    digest.update(str(frames.shape).encode())
    digest.update(np.ascontiguousarray(frames).data)
    return digest.hexdigest()


def cached_byol(frames: NDArray[np.uint8], config: BYOLConfig, cache_dir: str | Path = "runs/cache", retrain: bool = False,
                progress: bool = True) -> tuple[Encoder, dict]:
    """A BYOL encoder for (frames, config), trained once and cached under cache_dir/byol-<hash>.

    The key is the frames and `byol.result_settings(config)`: the config less `checkpoint_every`, and
    byol.BYOL_VERSION, so an encoder trained by older training code is not reused. Training checkpoints into
    the same folder, so an interrupted run resumes where it stopped.

    Returns:
        (encoder, info): info has the cache path, whether it was cached, and the per-epoch losses.
    """
    key = hashlib.sha256((frames_digest(frames) + json.dumps(byol_settings(config), sort_keys=True)).encode()).hexdigest()[:16]
    folder = Path(cache_dir) / f"byol-{key}"
    final = folder / "encoder"
    if final.exists() and not retrain:
        try:
            losses = json.loads((folder / "losses.json").read_text())
            return Encoder.load(final), {"path": str(final), "cached": True, "losses": losses}
        except (ArtefactError, OSError, json.JSONDecodeError):
            shutil.rmtree(final)  # our own unusable cache entry (e.g. a corrupt config.json, which a save refuses to replace): train again
    if retrain and folder.exists():
        shutil.rmtree(folder)
    encoder, losses = train_byol(frames, config, checkpoint_dir=folder / "checkpoint", progress=progress)
    atomic_write_text(folder / "losses.json", json.dumps(losses))
    encoder.save(final)
    shutil.rmtree(folder / "checkpoint", ignore_errors=True)  # only needed to resume an unfinished run
    return encoder, {"path": str(final), "cached": False, "losses": losses}


def cached_bc(frames: NDArray[np.uint8], actions: NDArray[np.floating], episode_ids: NDArray[np.integer], config: BCConfig,
              val_episodes: NDArray[np.integer], encoder: Encoder | None = None, cache_dir: str | Path = "runs/cache",
              retrain: bool = False, progress: bool = True) -> tuple[BCPolicy, dict]:
    """BC end-to-end (no encoder) or BC-rep (on `encoder`'s frozen features), trained once per (data, config,
    bc.BC_VERSION, encoder weights) and cached under cache_dir/bc[_rep]-<hash>. Training checkpoints every epoch
    into cache_dir/bc[_rep]-<hash>.checkpoint, so an interrupted run resumes where it stopped.
    Returns (policy, {"path", "cached"})."""
    digest = hashlib.sha256()
    for part in (frames_digest(frames), json.dumps(bc_settings(config), sort_keys=True)):
        digest.update(part.encode())
    for array in (np.asarray(actions, np.float32), np.asarray(episode_ids, np.int64), np.sort(np.asarray(val_episodes, np.int64))):
        digest.update(np.ascontiguousarray(array).tobytes())
    if encoder is not None:
        for name, tensor in sorted(encoder.state_tensors().items()):
            digest.update(name.encode())
            digest.update(tensor.contiguous().numpy().tobytes())
    folder = Path(cache_dir) / f"bc{'_rep' if encoder is not None else ''}-{digest.hexdigest()[:16]}"
    checkpoint = folder.with_name(folder.name + ".checkpoint")
    if folder.exists() and not retrain:
        try:
            return BCPolicy.load(folder), {"path": str(folder), "cached": True}
        except ArtefactError:
            shutil.rmtree(folder)  # our own unusable cache entry (e.g. a corrupt config.json, which a save refuses to replace): train again
    if retrain:
        shutil.rmtree(checkpoint, ignore_errors=True)

    def fit() -> BCPolicy:
        if encoder is None:
            return BCPolicy.fit_end_to_end(frames, actions, episode_ids, config, val_episodes=val_episodes, progress=progress,
                                           checkpoint_dir=checkpoint)
        return BCPolicy.fit_on_features(frames, actions, episode_ids, encoder, config, val_episodes=val_episodes,
                                        progress=progress, checkpoint_dir=checkpoint)

    try:
        policy = fit()
    except ArtefactError:
        if not checkpoint.exists():
            raise
        shutil.rmtree(checkpoint)  # our own unusable checkpoint (corrupt, or an older format): train afresh
        policy = fit()
    policy.save(folder)
    shutil.rmtree(checkpoint, ignore_errors=True)  # only needed to resume an unfinished run
    return policy, {"path": str(folder), "cached": False}
