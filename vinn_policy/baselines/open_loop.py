"""Open-loop baseline: replay the demonstration whose first frame is nearest the episode's first frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from vinn_policy.artefact import load_artefact, require_keys, save_artefact
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
