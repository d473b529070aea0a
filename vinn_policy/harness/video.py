"""Browser-playable MP4s (H.264, yuv420p) of rollouts, with VINN's neighbours in a grid beside each scene.

A VINN frame (render_size 256, 5 neighbours):

    +-----------+-------+-------+-------+
    |           | query | nb 1  | nb 2  |   each tile: a label band above the image,
    |   scene   +-------+-------+-------+   rows of tiles as tall as the scene
    |           | nb 3  | nb 4  | nb 5  |
    +-----------+-------+-------+-------+
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

LABEL = 14  # px: the text band above each tile's image


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


def _tile(image: NDArray[np.uint8], label: str, size: int) -> NDArray[np.uint8]:
    """(size + LABEL, size, 3): the image resized to size^2 under a one-line label."""
    tile = Image.fromarray(image).resize((size, size), Image.NEAREST)
    canvas = Image.new("RGB", (size, size + LABEL), (0, 0, 0))
    canvas.paste(tile, (0, LABEL))
    ImageDraw.Draw(canvas).text((2, 1), label, fill=(255, 255, 255))
    return np.asarray(canvas)


def grid(tiles: list[NDArray[np.uint8]], rows: int) -> NDArray[np.uint8]:
    """Equal-sized tiles (h, w, 3) row by row into `rows` rows; an incomplete last row is padded with black."""
    cols = -(-len(tiles) // rows)
    tiles = tiles + [np.zeros_like(tiles[0])] * (rows * cols - len(tiles))
    return np.concatenate([np.concatenate(tiles[r * cols:(r + 1) * cols], axis=1) for r in range(rows)], axis=0)


@dataclass(eq=False)
class NeighbourStrip:
    """A rollout annotator for VINNPolicy: the query and its nearest demo frames (weight, episode, frame index)
    as a grid of `rows` rows exactly `height` px tall, to sit beside a scene of that height (see `beside`).

    demo_frames are the database's frames in database row order. Other policies get no annotation (None).
    A class rather than a closure, so that rollout worker processes can receive it.
    """

    demo_frames: NDArray[np.uint8]
    image_key: str = "image"
    max_neighbours: int = 5
    height: int = 256
    """The scene's height (the env's render_size)."""
    rows: int = 2

    def __post_init__(self) -> None:
        if self.rows < 1 or self.height // self.rows - LABEL < 8:
            raise ValueError(f"NeighbourStrip needs rows >= 1 and tiles of >= 8 px (height // rows - {LABEL}); got "
                             f"height={self.height}, rows={self.rows}.")

    def __call__(self, obs: dict, policy: object) -> NDArray[np.uint8] | None:
        nb = getattr(policy, "last_neighbours", None)
        if nb is None:
            return None
        size = self.height // self.rows - LABEL
        tiles = [_tile(obs[self.image_key], "query", size)]
        plan = getattr(policy, "plan", None)
        step = int(plan.step[0]) if plan is not None else 0
        # a chunked plan's step j: the frames it expects now, each neighbour's demonstration j frames on
        rows, weights = (plan.rows[0, :, step], plan.weights[0, :, step]) if plan is not None else (nb.indices[0], nb.weights[0])
        for row, weight in list(zip(rows, weights, strict=True))[: self.max_neighbours]:
            if row >= 0:
                ep, t = policy.database.episode_ids[row], policy.database.frame_indices[row]
                tiles.append(_tile(self.demo_frames[row], f"w{weight:.2f} e{ep} t{t}" + (f" +{step}" if step else ""), size))
            else:  # this neighbour's demonstration ended before this step of the plan
                tiles.append(_tile(np.zeros((size, size, 3), np.uint8), "ended", size))
        blank = np.zeros_like(tiles[0])  # every frame of a video the same size, however many neighbours (k < max_neighbours)
        return grid(tiles + [blank] * (1 + self.max_neighbours - len(tiles)), self.rows)


def beside(scene: NDArray[np.uint8], panel: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """(max(H, h), W + w, 3): the scene (H, W, 3) at its rendered size with an annotation panel (h, w, 3) to its
    right, both top-aligned and padded with black to the taller one."""
    height = max(scene.shape[0], panel.shape[0])
    pad = lambda a: np.pad(a, ((0, height - a.shape[0]), (0, 0), (0, 0)))  # noqa: E731
    return np.concatenate([pad(scene), pad(panel)], axis=1)
