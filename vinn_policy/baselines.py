"""Non-learned baselines with the policy interface: open-loop replay, uniform random actions, and an oracle
(VINN's regression over privileged simulator state instead of images).

`load_policy(path)` loads any saved policy (VINN, BC, open-loop, random) by the kind in its config.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from vinn_policy.artefact import META_FILE, ArtefactError, load_artefact, require_keys, save_artefact
from vinn_policy.database import EmbeddingDatabase
from vinn_policy.encoder import check_images, to_unit_tensor
from vinn_policy.policy import extract_images

THUMBNAIL = 32  # open-loop matches first frames in pixel space at this size


def thumbnails(images: NDArray[np.uint8]) -> NDArray[np.float32]:
    """(B, H, W, 3) uint8 -> (B, 3*32*32) float in [0, 1]: the pixel space open-loop matches in."""
    return to_unit_tensor(check_images(images), THUMBNAIL).flatten(1).numpy()


class OpenLoopPolicy:
    """Replays the action sequence of the demonstration whose first frame is nearest the episode's first frame.

    The match is L2 in 32x32 pixel space, so open-loop borrows nothing from any learned representation.
    After the demonstration's last action it keeps repeating that action.
    """

    def __init__(self, first_frames: NDArray[np.float32], actions: list[NDArray[np.float32]], image_key: str = "image") -> None:
        if len(first_frames) == 0 or len(first_frames) != len(actions):
            raise ValueError(f"Need one first frame per demonstration and at least one; got {len(first_frames)} and {len(actions)}.")
        self.first_frames = np.asarray(first_frames, np.float32)  # (E, 3*32*32)
        self.demo_actions = [np.asarray(a, np.float32) for a in actions]  # E x (T_e, A)
        self.image_key = image_key
        self.reset()

    @classmethod
    def fit(cls, frames: NDArray[np.uint8], actions: NDArray, episode_ids: NDArray, image_key: str = "image") -> OpenLoopPolicy:
        frames, actions, episode_ids = check_images(frames), np.asarray(actions, np.float32), np.asarray(episode_ids)
        episodes = list(dict.fromkeys(episode_ids.tolist()))  # file order
        firsts = [int(np.flatnonzero(episode_ids == e)[0]) for e in episodes]
        return cls(thumbnails(frames[firsts]), [actions[episode_ids == e] for e in episodes], image_key)

    def reset(self, seed: int | None = None) -> None:
        self.demo: int | None = None
        self.t = 0

    @property
    def uses_images(self) -> bool:
        """Only until the first act() has chosen the demonstration; rollouts then stop rendering the camera."""
        return self.demo is None

    def choose(self, first_image: NDArray[np.uint8]) -> int:
        """Index of the demonstration to replay for an episode starting with `first_image`."""
        return int(np.argmin(((self.first_frames - thumbnails(first_image)) ** 2).sum(1)))

    def act(self, obs: object) -> NDArray[np.float32]:
        if self.demo is None:
            self.demo = self.choose(extract_images(obs, self.image_key))
        actions = self.demo_actions[self.demo]
        action = actions[min(self.t, len(actions) - 1)]
        self.t += 1
        return action.copy()

    def save(self, path: str | Path) -> Path:
        lengths = torch.tensor([len(a) for a in self.demo_actions])
        tensors = {"first_frames": torch.from_numpy(self.first_frames), "actions": torch.from_numpy(np.concatenate(self.demo_actions)),
                   "lengths": lengths}
        return save_artefact(path, "open_loop_policy", tensors, {"image_key": self.image_key})

    @classmethod
    def load(cls, path: str | Path) -> OpenLoopPolicy:
        tensors, meta = load_artefact(path, "open_loop_policy")
        require_keys(tensors, ["first_frames", "actions", "lengths"], path)
        splits = np.cumsum(tensors["lengths"].numpy())[:-1]
        return cls(tensors["first_frames"].numpy(), np.split(tensors["actions"].numpy(), splits), meta.get("image_key", "image"))


class RandomPolicy:
    """Uniform random actions in [low, high]^A; reset(seed=s) makes the episode's actions a function of (seed, s)."""

    uses_images = False  # rollouts skip rendering the camera for it

    def __init__(self, action_dim: int = 4, low: float = -1.0, high: float = 1.0, seed: int = 0) -> None:
        if action_dim < 1 or not low < high:
            raise ValueError(f"Need action_dim >= 1 and low < high; got {action_dim}, {low}, {high}.")
        self.action_dim, self.low, self.high, self.seed = action_dim, low, high, seed
        self.rng = np.random.default_rng(seed)

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng([self.seed, seed])

    def act(self, obs: object) -> NDArray[np.float32]:
        return self.rng.uniform(self.low, self.high, self.action_dim).astype(np.float32)

    def save(self, path: str | Path) -> Path:
        meta = {"action_dim": self.action_dim, "low": self.low, "high": self.high, "seed": self.seed}
        return save_artefact(path, "random_policy", {}, meta)

    @classmethod
    def load(cls, path: str | Path) -> RandomPolicy:
        _, meta = load_artefact(path, "random_policy")
        return cls(meta["action_dim"], meta["low"], meta["high"], meta["seed"])


def state_features(obs: dict[str, NDArray], objects: tuple[str, ...]) -> NDArray[np.float32]:
    """(..., 3 * len(objects) + 2) the state oracle's embedding, in cm: each object position relative to the
    gripper (robot0_eef_pos), then the finger joints (robot0_gripper_qpos)."""
    missing = [key for key in ("robot0_eef_pos", *objects, "robot0_gripper_qpos") if key not in obs]
    if missing:
        raise ValueError(f"The state oracle needs the privileged observation keys {missing}; got {sorted(obs)}.")
    eef = np.asarray(obs["robot0_eef_pos"])
    parts = [np.asarray(obs[key]) - eef for key in objects] + [np.asarray(obs["robot0_gripper_qpos"])]
    return (100 * np.concatenate(parts, -1)).astype(np.float32)


class StateKNNPolicy:
    """An oracle, not a baseline: VINN's locally weighted regression (k nearest by L2, softmin weights, gripper
    vote) over state_features instead of image embeddings. Its success is what a perfect encoder would allow
    with the same demonstrations. Needs the simulator's privileged keys in every observation."""

    uses_images = False

    def __init__(self, features: NDArray, actions: NDArray, episode_ids: NDArray, k: int, objects: tuple[str, ...],
                 gripper_index: int | None = None) -> None:
        self.database = EmbeddingDatabase(features, actions, episode_ids, gripper_index=gripper_index, index="exact")
        self.k, self.objects = k, objects

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, obs: dict[str, NDArray]) -> NDArray[np.float32]:
        return self.database.query(state_features(obs, self.objects)[None], self.k).actions[0]


def load_policy(path: str | Path) -> object:
    """Load any saved policy by the `kind` recorded in its config.json."""
    from vinn_policy.bc import BCPolicy
    from vinn_policy.policy import VINNPolicy

    classes = {"vinn_policy": VINNPolicy, "bc_policy": BCPolicy, "open_loop_policy": OpenLoopPolicy, "random_policy": RandomPolicy}
    try:
        kind = json.loads((Path(path) / META_FILE).read_text()).get("kind")
    except (OSError, json.JSONDecodeError, AttributeError) as e:
        raise ArtefactError(f"{path} is not a saved policy ({e}).") from e
    if kind not in classes:
        raise ArtefactError(f"{path} holds a {kind!r} artefact; policies are {sorted(classes)}.")
    return classes[kind].load(path)
