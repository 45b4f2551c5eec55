"""Evaluation on clean environments: no noise, no reward clipping, frozen observation statistics.

Each of the ``episodes`` evaluation environments plays exactly one episode (so short episodes are not
over-represented) and the return is the sum of the environment's own, unnormalised rewards.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

import gymnasium as gym
import numpy as np
import torch

from .config import Config
from .envs.make import build_env, is_atari
from .envs.normalize import ObsNormalizer
from .errors import SymrlError
from .policies import ActorCritic

if TYPE_CHECKING:
    from .fast import NumpyEngine


def default_deterministic(cfg: Config) -> bool:
    """Deterministic for control tasks, stochastic for Atari (SPEC 4), unless the config says otherwise."""
    return cfg.eval_deterministic if cfg.eval_deterministic is not None else not is_atari(cfg)


def make_eval_envs(cfg: Config, n: int) -> gym.vector.VectorEnv:
    return gym.vector.SyncVectorEnv([functools.partial(build_env, cfg, False) for _ in range(n)])


def evaluate(
    policy: ActorCritic,
    envs: gym.vector.VectorEnv,
    obs_norm: ObsNormalizer,
    episodes: int,
    deterministic: bool,
    seed: int,
    engine: Optional["NumpyEngine"] = None,
) -> np.ndarray:
    """Returns of ``episodes`` episodes, played ``envs.num_envs`` at a time. ``seed`` seeds the environments and
    the sampled actions (stochastic evaluation), which draw from torch's generator forked for the evaluation: the
    same seed gives the same returns, and training's random stream does not depend on when it evaluates.
    With the training's NumPy ``engine`` (:mod:`symrl.fast`), deterministic actions come from its forward pass, the
    same network without torch's per-call cost (a fifth of a CartPole run's time was evaluation's torch forwards);
    it draws no random numbers, so stochastic evaluation keeps torch's seeded sampling."""
    returns: list[float] = []
    device = next(policy.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        while len(returns) < episodes:
            n = envs.num_envs
            obs, _ = envs.reset(seed=[seed + len(returns) + i for i in range(n)])
            totals = np.zeros(n)
            running = np.ones(n, dtype=bool)
            while running.any():
                actions = _actions(policy, engine, obs_norm(obs), deterministic)
                obs, reward, terminated, truncated, _ = envs.step(actions)
                totals += np.where(running, reward, 0.0)
                running &= ~(terminated | truncated)
            returns += totals.tolist()
    return np.asarray(returns[:episodes])


def _actions(policy: ActorCritic, engine: Optional["NumpyEngine"], obs: np.ndarray, deterministic: bool) -> np.ndarray:
    if engine is None or not deterministic:
        return policy.act_numpy(obs, deterministic)
    return policy.env_actions(engine.act(obs, deterministic=True)[0])  # the mode: no random numbers drawn


def record_videos(agent, folder: Path, episodes: int, seed: int = 0, deterministic: Optional[bool] = None) -> np.ndarray:
    """Play ``episodes`` clean episodes of a loaded :class:`symrl.Agent` (seeds ``seed``, ``seed + 1``, ...) and
    record each as an MP4 in ``folder`` (Gymnasium's ``RecordVideo``; the folder's older videos are removed);
    returns the episode returns. ``deterministic`` defaults to the env family's (stochastic for Atari)."""
    deterministic = default_deterministic(agent.config) if deterministic is None else deterministic
    for old in folder.glob("*.mp4") if folder.is_dir() else ():  # this evaluation's episodes only
        old.unlink()
    with _offscreen_sdl():
        return _record(agent, folder, episodes, seed, deterministic)


@contextlib.contextmanager
def _offscreen_sdl() -> Iterator[None]:
    """Frames are drawn off screen: pygame's SDL (classic control, Box2D) gets its dummy video driver unless the user
    chose one, so that it opens no window and prints no "error: XDG_RUNTIME_DIR is invalid" line where that variable
    is unset (a user grepping for ``^error:`` sees symrl's errors only). The variable is put back afterwards."""
    chosen = os.environ.get("SDL_VIDEODRIVER")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    try:
        yield
    finally:
        if chosen is None:
            os.environ.pop("SDL_VIDEODRIVER", None)


def _record(agent, folder: Path, episodes: int, seed: int, deterministic: bool) -> np.ndarray:
    try:
        env = gym.wrappers.RecordVideo(agent.make_env(render_mode="rgb_array"), str(folder),
                                       episode_trigger=lambda _: True, disable_logger=True)
    except gym.error.DependencyNotInstalled:
        raise SymrlError("--video needs moviepy; install it with pip install 'symrl[video]'") from None
    returns, no_opengl = [], False
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + episode)
            total, done = 0.0, False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(agent.act(obs, deterministic))
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
    except Exception as exc:
        if "OpenGL" not in str(exc):
            raise
        no_opengl = True
        raise SymrlError("rendering found no OpenGL context (no display); set MUJOCO_GL=egl (a GPU's EGL) or "
                         "MUJOCO_GL=osmesa (software), e.g. MUJOCO_GL=egl symrl eval ... --video") from None
    finally:
        # a renderer that never started fails to close too
        with contextlib.suppress(Exception) if no_opengl else contextlib.nullcontext():
            env.close()
    return np.asarray(returns)
