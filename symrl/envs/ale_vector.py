"""ALE's own C++ vector environment as a training backend for Atari (``vec_env: ale``, ``--vec-backend ale``).

ale-py (already a symrl dependency) ships ``AtariVectorEnv``: the games step in C++ threads and the
standard preprocessing runs there too (noop-max, frame-skip 4 with max-pool over the last two frames,
84x84 grey, frame stack, FIRE on reset), with same-step autoreset and the final observation in the infos.
On 2 cores it steps 8 Pong environments about 2.5x faster than the Gymnasium wrapper stack in one process,
and about 1.1x faster than symrl's default (the same stack fused, split over 2 processes; ``benchmarks/atari_parts.py``,
results in benchmarks/RESULTS.md).

Episodic life is ALE's ``life_loss_info``: a lost life ends the training episode and the game goes on,
as with symrl's ``EpisodicLife``. One difference from the wrapper path: FIRE is pressed only when a game
starts, not again after a lost life (as in EnvPool), so in games that wait for FIRE after a lost life the
agent presses it itself. Rewards come back raw (the rollout sign-clips them); episode statistics count
whole games. Only training uses this backend; evaluation keeps the Gymnasium environments.
"""

from __future__ import annotations

from typing import Optional

import gymnasium as gym
import numpy as np

from ..errors import SymrlError
from ..threads import available_threads
from .registry import env_spec
from .settings import EnvSettings
from .vector import GameEpisodes


def ale_settings(cfg: EnvSettings) -> dict:
    """``AtariVectorEnv`` keyword arguments equivalent to symrl's Atari wrappers for ``cfg``."""
    spec = env_spec(cfg.env)
    if not str(spec.entry_point).startswith("ale_py"):
        raise SymrlError(f"--vec-backend ale steps Atari games only, not {cfg.env}; use --vec-backend sync")
    if cfg.env_kwargs:
        raise SymrlError("env_kwargs are not passed to ALE's vector environment; drop them or use --vec-backend sync")
    if cfg.bins:
        raise SymrlError(f"--bins discretises Box action spaces, but {cfg.env} has Discrete actions; drop --bins")
    kwargs = spec.kwargs
    return dict(
        game=kwargs["game"], num_envs=cfg.n_envs,
        num_threads=min(cfg.n_envs, available_threads(cfg.torch_threads)),
        repeat_action_probability=float(kwargs.get("repeat_action_probability", 0.0)),
        full_action_space=bool(kwargs.get("full_action_space", False)),
        max_num_frames_per_episode=int(kwargs.get("max_num_frames_per_episode", 108_000)),
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
        img_height=84, img_width=84, grayscale=True, stack_num=cfg.frame_stack, frameskip=4, maxpool=True,
        noop_max=cfg.noop_max, use_fire_reset=True,
        episodic_life=False, life_loss_info=cfg.episodic_life, reward_clipping=False,
    )


class AleVectorEnv(gym.vector.VectorEnv):
    """``cfg.n_envs`` Atari games in ALE's C++ vector environment, with symrl's rollout infos."""

    def __init__(self, cfg: EnvSettings):
        from ale_py.vector_env import AtariVectorEnv  # noqa: PLC0415

        self.env = AtariVectorEnv(**ale_settings(cfg))
        self.num_envs = cfg.n_envs
        self.life_loss = cfg.episodic_life
        self.single_observation_space = self.env.single_observation_space
        self.single_action_space = self.env.single_action_space
        self.observation_space = self.env.observation_space
        self.action_space = self.env.action_space
        self.metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
        self.episodes = GameEpisodes(self.num_envs)
        self._lives = np.zeros(self.num_envs, np.int64)

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        obs, info = self.env.reset(seed=seed)
        self.episodes.reset()
        self._lives[:] = info["lives"]
        return obs, {}

    def step(self, actions: np.ndarray):
        obs, reward, terminated, truncated, info = self.env.step(np.asarray(actions, np.int64))
        done = terminated | truncated
        lives = info["lives"].astype(np.int64)
        # with life_loss_info a finished game is reset in the same step, so its lives go back up (or stay
        # at 0 in games without lives); a lost life within a game lowers them
        game_over = truncated | (lives >= self._lives) if self.life_loss else done
        self._lives[:] = lives
        reward = reward.astype(np.float64)
        infos = self.episodes.step(reward, done, game_over, info.get("final_obs"))
        return obs, reward, terminated, truncated, infos

    def close_extras(self, **kwargs) -> None:
        self.env.close()
