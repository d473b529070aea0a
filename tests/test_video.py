"""Video frames: the scene at its rendered size beside VINN's neighbours, one size for every frame (no simulator)."""

from types import SimpleNamespace

import numpy as np
import pytest

from vinn_policy.harness.rollout import run_episode
from vinn_policy.harness.video import NeighbourStrip

RNG = np.random.default_rng(0)
SCENE = RNG.integers(1, 256, (256, 256, 3), dtype=np.uint8)  # no black pixel of its own: black is padding


class FakeEnv:
    """Renders SCENE; 84-px image observations; truncates after `steps`."""

    def __init__(self, render_mode: str | None = "rgb_array", steps: int = 3) -> None:
        self.render_mode, self.steps, self.unwrapped = render_mode, steps, self

    def _obs(self) -> dict:
        return {"image": RNG.integers(1, 256, (84, 84, 3), dtype=np.uint8)}

    def reset(self, seed=None):
        self.t = 0
        return self._obs(), {"is_success": False}

    def step(self, action):
        self.t += 1
        return self._obs(), 0.0, False, self.t >= self.steps, {"is_success": False}

    def render(self):
        return None if self.render_mode is None else SCENE.copy()


class FakeVINN:
    """Five neighbours (rows 0-4 of a 10-frame database) after every act()."""

    database = SimpleNamespace(episode_ids=np.arange(10) // 5, frame_indices=np.arange(10) % 5)

    def reset(self, seed=None) -> None:
        self.last_neighbours = None

    def act(self, obs):
        self.last_neighbours = SimpleNamespace(indices=np.arange(5)[None], weights=np.full((1, 5), 0.2))
        return np.zeros(4, np.float32)


DEMO_FRAMES = RNG.integers(1, 256, (10, 84, 84, 3), dtype=np.uint8)


def test_a_vinn_frame_shows_the_whole_scene_and_little_black_padding():
    episode = run_episode(FakeEnv(), FakeVINN(), seed=0, render=True, annotate=NeighbourStrip(DEMO_FRAMES))
    frame = episode.frames[0]
    np.testing.assert_array_equal(frame[:256, :256], SCENE)  # at its rendered size, not scaled down
    black = (frame == 0).all(-1).mean()  # padding and the tiles' label bands
    assert black < 0.15, f"{black:.0%} of the frame is black"


def test_every_frame_keeps_one_size_when_the_annotation_stops():
    strip = NeighbourStrip(DEMO_FRAMES)
    calls = []

    def first_step_only(obs, policy):  # a panel on the first step, then none
        calls.append(1)
        return strip(obs, policy) if len(calls) == 1 else None

    episode = run_episode(FakeEnv(steps=3), FakeVINN(), seed=0, render=True, annotate=first_step_only)
    assert len(episode.frames) == 4 and len({f.shape for f in episode.frames}) == 1
    for frame in episode.frames[1:]:  # the scene, and a blank where the panel was
        np.testing.assert_array_equal(frame[:256, :256], SCENE)
        assert not frame[:, 256:].any()


def test_rendering_needs_an_env_made_with_rgb_array():
    with pytest.raises(ValueError, match="render_mode='rgb_array'.*render_mode=None"):
        run_episode(FakeEnv(render_mode=None), FakeVINN(), seed=0, render=True)


def test_neighbour_strip_refuses_tiles_too_small_to_see():
    with pytest.raises(ValueError, match="height=40, rows=2"):
        NeighbourStrip(DEMO_FRAMES, height=40)
