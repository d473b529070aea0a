"""Browser-playable MP4s (H.264, yuv420p) of rollouts, with VINN's neighbour strip under each frame."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

TILE = 96


def write_mp4(path: str | Path, frames: list[NDArray[np.uint8]], fps: int = 20) -> Path:
    """Write frames (H, W, 3) uint8 as H.264/yuv420p, padded to even sizes; written to a temp name first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.mp4")
    h, w = frames[0].shape[:2]
    pad = ((0, h % 2), (0, w % 2), (0, 0))
    with imageio.get_writer(tmp, fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=1,
                            ffmpeg_params=["-movflags", "+faststart"]) as writer:
        for frame in frames:
            writer.append_data(np.pad(frame, pad))
    tmp.replace(path)
    return path


def _tile(image: NDArray[np.uint8], label: str) -> NDArray[np.uint8]:
    tile = Image.fromarray(image).resize((TILE, TILE), Image.NEAREST)
    canvas = Image.new("RGB", (TILE, TILE + 14), (0, 0, 0))
    canvas.paste(tile, (0, 14))
    ImageDraw.Draw(canvas).text((2, 1), label, fill=(255, 255, 255))
    return np.asarray(canvas)


@dataclass(eq=False)
class NeighbourStrip:
    """A rollout annotator for VINNPolicy: [query | nearest demo frames with weight, episode, frame index].

    demo_frames are the database's frames in database row order. Other policies get no strip (None).
    A class rather than a closure, so that rollout worker processes can receive it.
    """

    demo_frames: NDArray[np.uint8]
    image_key: str = "image"
    max_neighbours: int = 5

    def __call__(self, obs: dict, policy: object) -> NDArray[np.uint8] | None:
        nb = getattr(policy, "last_neighbours", None)
        if nb is None:
            return None
        tiles = [_tile(obs[self.image_key], "query")]
        for i in range(min(self.max_neighbours, nb.indices.shape[1])):
            row = int(nb.indices[0, i])
            ep, t = policy.database.episode_ids[row], policy.database.frame_indices[row]
            tiles.append(_tile(self.demo_frames[row], f"w{nb.weights[0, i]:.2f} e{ep} t{t}"))
        return np.concatenate(tiles, axis=1)


def stack_frames(top: NDArray[np.uint8], bottom: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Render frame above an annotation strip, both padded to the wider one."""
    width = max(top.shape[1], bottom.shape[1])
    pad = lambda a: np.pad(a, ((0, 0), (0, width - a.shape[1]), (0, 0)))  # noqa: E731
    return np.concatenate([pad(top), pad(bottom)], axis=0)
