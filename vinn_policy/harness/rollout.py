"""Rollouts: the only code that touches both an env and a policy, in one process or in worker processes.

A policy is anything with reset() and act(obs). Workers receive a picklable `make_policy()` callable
(e.g. `functools.partial(make_expert, "door")` or `functools.partial(VINNPolicy.load, path)`) and build
their own env and policy once.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from numpy.typing import NDArray

from vinn_policy.harness.results import one_torch_thread
from vinn_policy.harness.video import beside


class Policy(Protocol):
    def reset(self, seed: int | None = None) -> None: ...
    def act(self, obs: dict[str, NDArray]) -> NDArray[np.float32]: ...


@dataclass
class Episode:
    """One rollout. T = steps taken; arrays are filled only when recorded."""

    seed: int
    success: bool
    steps: int
    wall_time: float
    first_success_step: int | None = None
    actions: NDArray[np.float32] | None = None  # (T, A) the policy's actions (the labels)
    executed: NDArray[np.float32] | None = None  # (T, A) what was sent to the env (with noise)
    rewards: NDArray[np.float32] | None = None  # (T,)
    dones: NDArray[np.uint8] | None = None  # (T,)
    states: NDArray[np.float64] | None = None  # (T, S) MuJoCo state before each action
    obs: dict[str, NDArray] = field(default_factory=dict)  # key -> (T, ...) observation before each action
    frames: list[NDArray[np.uint8]] = field(default_factory=list)  # T + 1 render() frames, if asked
    trace: list[dict] = field(default_factory=list)  # per step: trace(policy) after each act(), if asked


def run_episode(
    env: Any,
    policy: Policy,
    seed: int,
    action_noise: float = 0.0,
    record: bool = False,
    render: bool = False,
    annotate: Callable[[dict, Any], NDArray[np.uint8] | None] | None = None,
    trace: Callable[[Any], dict | None] | None = None,
) -> Episode:
    """Run one episode from reset(seed=seed) until termination or truncation.

    Args:
        action_noise: std of Gaussian noise added to the translation part of each executed action (the
            recorded `actions` stay the policy's intended ones: DART-style corrective labels). Its RNG is
            seeded from `seed`, so an episode is reproducible.
        record: keep observations, actions, rewards, dones and MuJoCo states (for demonstration files).
        render: keep env.render() frames (for videos): the scene before each action, and the final one. The env
            must be made with render_mode="rgb_array".
        annotate: with render, `annotate(obs, policy)` after each act() gives an image panel (or None) placed
            beside the scene the policy acted on (e.g. VINN's neighbours); once a panel has been shown, steps
            without one and the final scene get a blank of its size, so every frame keeps one size.
        trace: `trace(policy)` after each act() -> a dict kept in `episode.trace` (e.g. VINN's uncertainty and
            neighbours); None results are dropped. Must be picklable to run in worker processes.
    """
    if render and getattr(env, "render_mode", None) != "rgb_array":
        raise ValueError(f"render=True needs an env made with render_mode='rgb_array' (e.g. make_env(task, "
                         f"render_mode='rgb_array')); this one has render_mode={getattr(env, 'render_mode', None)!r}.")
    # A policy that is not looking (uses_images False, e.g. random, or open-loop once it has chosen its
    # demonstration) gets no camera image: rendering is most of a step's cost and the physics ignores it.
    camera = _CameraSwitch(env) if not record and hasattr(env.unwrapped, "set_camera_obs") else None
    # One torch thread, as in every worker: a CPU convolution's sums depend on the thread count, and a
    # last-bit difference in one action can change a closed-loop episode (a video or --replay would then
    # not reproduce the evaluation).
    try:
        with one_torch_thread():
            return _run_episode(env, policy, seed, action_noise, record, render, annotate, trace, camera)
    finally:
        if camera is not None:
            camera.set(True)


class _CameraSwitch:
    """Turns the env's camera observation on or off, touching robosuite only when that changes."""

    def __init__(self, env: Any) -> None:
        self.env, self.on = env.unwrapped, True

    def follow(self, policy: Policy) -> None:
        self.set(getattr(policy, "uses_images", True))

    def set(self, on: bool) -> None:
        if on != self.on:
            self.env.set_camera_obs(on)
            self.on = on


def _run_episode(env, policy, seed, action_noise, record, render, annotate, trace, camera) -> Episode:
    start = time.perf_counter()
    noise_rng = np.random.default_rng([seed, 7919])
    policy.reset(seed=seed)  # stochastic policies derive their episode randomness from the seed
    if camera is not None:
        camera.follow(policy)
    obs, info = env.reset(seed=seed)
    rows: dict[str, list] = {"actions": [], "executed": [], "rewards": [], "dones": [], "states": []}
    obs_rows: dict[str, list] = {k: [] for k in obs} if record else {}
    frames, blank = [], None
    steps, first_success, done, traced = 0, None, False, []
    while not done:
        action = np.asarray(policy.act(obs), dtype=np.float32)
        if camera is not None:
            camera.follow(policy)
        if render:  # the scene the policy saw, beside what it made of it (e.g. VINN's neighbours)
            panel = annotate(obs, policy) if annotate is not None else None
            if panel is None and blank is not None:
                panel = blank  # every frame of a video has one size
            frames.append(env.render() if panel is None else beside(env.render(), panel))
            blank = None if panel is None else np.zeros_like(panel)
        step_trace = trace(policy) if trace is not None else None
        if step_trace is not None:
            traced.append(step_trace)
        executed = action.copy()
        if action_noise > 0:
            executed[:3] = np.clip(executed[:3] + noise_rng.normal(0.0, action_noise, 3), -1.0, 1.0)
        if record:
            for k, v in obs.items():
                obs_rows[k].append(v)
            rows["states"].append(env.unwrapped.sim_state())
        obs, reward, terminated, truncated, info = env.step(executed)
        steps += 1
        done = terminated or truncated
        if info["is_success"] and first_success is None:
            first_success = steps
        if record:
            rows["actions"].append(action)
            rows["executed"].append(executed)
            rows["rewards"].append(reward)
            rows["dones"].append(done)
    if render:  # the final scene, with a blank panel
        frames.append(env.render() if blank is None else beside(env.render(), blank))
    episode = Episode(seed, bool(info["is_success"]), steps, time.perf_counter() - start, first_success, frames=frames, trace=traced)
    if record:
        episode.actions = np.asarray(rows["actions"], np.float32)
        episode.executed = np.asarray(rows["executed"], np.float32)
        episode.rewards = np.asarray(rows["rewards"], np.float32)
        episode.dones = np.asarray(rows["dones"], np.uint8)
        episode.states = np.asarray(rows["states"], np.float64)
        episode.obs = {k: np.stack(v) for k, v in obs_rows.items()}
    return episode


# --- worker processes -------------------------------------------------------------------------------

_worker: dict[str, Any] = {}


def _init_worker(make_env: Callable[[], Any], episode_kwargs: dict) -> None:
    # Two processes saturate two cores only if neither spawns its own thread pool.
    os.environ["LP_NUM_THREADS"] = "1"
    os.environ["OMP_NUM_THREADS"] = "1"
    import torchvision  # noqa: F401  before the GL context: its triton import (own LLVM) segfaults once Mesa's llvmpipe is loaded

    torch.set_num_threads(1)
    _worker.update(env=make_env(), policies={}, kwargs=episode_kwargs)


def _run_job(job: tuple[str, Callable[[], Policy], int]) -> Episode:
    key, make_policy, seed = job
    if key not in _worker["policies"]:  # each worker builds each policy once
        _worker["policies"][key] = make_policy()
    return run_episode(_worker["env"], _worker["policies"][key], seed, **_worker["kwargs"])


def run_jobs(
    make_env: Callable[[], Any],
    jobs: Sequence[tuple[str, Callable[[], Policy], int]],
    workers: int = 1,
    isolate: bool = False,
    **episode_kwargs: Any,
) -> Iterator[Episode]:
    """Episodes for (policy key, make_policy, seed) jobs, in order, from `workers` processes (1 = this one,
    unless `isolate`: then it too is a separate single-threaded process, as each of several workers is).

    Each worker makes one env and each policy once, so many methods share one pool. Results do not depend
    on the number of workers: each episode is fixed by its seed.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}.")
    if not jobs:
        return
    if not isolate and (workers == 1 or len(jobs) == 1):
        env, policies = make_env(), {}
        try:
            for key, make_policy, seed in jobs:
                if key not in policies:
                    policies[key] = make_policy()
                yield run_episode(env, policies[key], seed, **episode_kwargs)
        finally:
            env.close()
        return
    # spawn: MuJoCo's GL context and torch's thread pool do not survive fork. ProcessPoolExecutor, unlike
    # multiprocessing.Pool, fails loudly (BrokenProcessPool) instead of waiting forever if a worker crashes.
    with ProcessPoolExecutor(min(workers, len(jobs)), mp.get_context("spawn"), _init_worker, (make_env, episode_kwargs)) as pool:
        try:
            yield from pool.map(_run_job, list(jobs))
        except BrokenProcessPool as e:
            raise RuntimeError(f"A rollout worker process died (crashed or was killed): {e}") from e


def rollouts(
    make_env: Callable[[], Any],
    make_policy: Callable[[], Policy],
    seeds: Sequence[int],
    workers: int = 1,
    **episode_kwargs: Any,
) -> Iterator[Episode]:
    """Episodes of one policy for `seeds`, in order (see run_jobs)."""
    yield from run_jobs(make_env, [("policy", make_policy, int(s)) for s in seeds], workers, **episode_kwargs)
