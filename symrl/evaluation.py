"""Evaluation on clean environments: no noise, no reward clipping, frozen observation statistics.

Each of the ``episodes`` evaluation environments plays exactly one episode (so short episodes are not
over-represented) and the return is the sum of the environment's own, unnormalised rewards.
"""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
import torch

from .config import Config
from .envs.make import build_env, is_atari
from .envs.normalize import ObsNormalizer
from .policies import ActorCritic


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
) -> np.ndarray:
    """Returns of ``episodes`` episodes, played ``envs.num_envs`` at a time. ``seed`` seeds the environments and
    the sampled actions (stochastic evaluation), which draw from torch's generator forked for the evaluation: the
    same seed gives the same returns, and training's random stream does not depend on when it evaluates."""
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
                actions = policy.act_numpy(obs_norm(obs), deterministic)
                obs, reward, terminated, truncated, _ = envs.step(actions)
                totals += np.where(running, reward, 0.0)
                running &= ~(terminated | truncated)
            returns += totals.tolist()
    return np.asarray(returns[:episodes])
