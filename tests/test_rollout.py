"""Rollouts: an episode is the same in this process and in a worker process."""

import functools
import os

import numpy as np
import pytest
import torch
from vinn_policy.envs import make_env

from vinn_policy.encoder import Encoder, EncoderConfig
from vinn_policy.harness.rollout import run_episode, run_jobs


class EmbeddingPolicy:
    """Actions are a smooth function of the image's embedding, so any difference in the embedding shows."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.encoder = Encoder(EncoderConfig(image_size=84))

    def reset(self, seed=None) -> None:
        pass

    def act(self, obs):
        z = self.encoder.embed(obs["image"])[0]
        return np.tanh(z[:4] - z[4:8]).astype(np.float32)


@pytest.mark.sim
def test_an_episode_in_this_process_equals_the_same_seed_in_a_worker():
    make = functools.partial(make_env, "door", image_size=84, horizon=12)
    torch.set_num_threads(2)  # what this process would otherwise use; a worker runs one thread
    env = make()
    try:
        here = run_episode(env, EmbeddingPolicy(), seed=3, record=True)
    finally:
        env.close()
    assert torch.get_num_threads() == 2  # restored
    there = next(run_jobs(make, [("p", EmbeddingPolicy, 3), ("p", EmbeddingPolicy, 4)], workers=2, record=True))
    np.testing.assert_array_equal(here.actions, there.actions)
    np.testing.assert_array_equal(here.states, there.states)


def process_id(policy) -> dict:
    return {"pid": os.getpid()}


@pytest.mark.sim
def test_isolate_runs_even_a_single_job_in_a_worker_process():
    make = functools.partial(make_env, "door", image_size=48, horizon=2)
    episodes = list(run_jobs(make, [("p", EmbeddingPolicy, 3)], isolate=True, trace=process_id))
    assert len(episodes) == 1 and {t["pid"] for t in episodes[0].trace} != {os.getpid()}
    assert list(run_jobs(make, [], workers=2, isolate=True)) == []
