"""Atari training games with symrl's wrapper stack fused into plain calls on the emulator, split over processes.

:func:`~symrl.envs.make.build_env` stacks six Gymnasium wrappers on ale-py's ``AtariEnv`` (frame-skip 1):
``AtariPreprocessing`` (noop-max, frame-skip 4 with a max-pool of the last two frames, 84x84 grey),
``RecordEpisodeStatistics``, symrl's ``EpisodicLife`` (training) and ``FireReset``, then
``FrameStackObservation``. Each agent step then walks four wrapper layers four times and renders an RGB screen
after every emulator frame that nobody reads: about a third of a Pong step is Python around the emulator.
:class:`AtariGame` does the same steps on the same ``AtariEnv`` (its seeding, its noop draws, its action set)
with each layer written out as one method below, so observations, rewards, ends and episode statistics are
identical (``tests/test_atari_game.py`` checks them step by step against the wrapper stack).

The emulator holds the GIL, so threads cannot step games side by side; :class:`AtariGamesVectorEnv` splits the
games over this process and one worker process per further core (:mod:`symrl.envs.split`).
Which process steps which game changes no game, so results do not depend on the split. On 2 cores 8 Pong games
step about 2.4x faster than the wrapper stack in one process (``benchmarks/atari_parts.py``).
"""

from __future__ import annotations

import functools
from typing import Optional

import gymnasium as gym
import numpy as np

from ..errors import SymrlError
from .registry import gym_make
from .settings import EnvSettings
from .split import EnvStackShare, GameSplitVectorEnv
from .wrappers import FireReset

# env_kwargs an AtariGame passes on to AtariEnv; anything else (obs_type, frameskip, ...) takes the wrapper stack
GAME_KWARGS = frozenset({"repeat_action_probability", "full_action_space", "mode", "difficulty",
                         "max_num_frames_per_episode"})


def fused_games_apply(cfg: EnvSettings) -> bool:
    """Whether :class:`AtariGamesVectorEnv` reproduces :func:`~symrl.envs.make.build_env`'s stack for ``cfg``."""
    return not cfg.bins and set(cfg.env_kwargs) <= GAME_KWARGS


class AtariGame:
    """One Atari training game: the wrapper stack of ``build_env(cfg, train=True)``, one method per wrapper."""

    SKIP, SIZE = 4, 84

    def __init__(self, cfg: EnvSettings):
        try:
            import cv2  # noqa: PLC0415
        except ImportError:
            raise SymrlError("Atari preprocessing needs OpenCV; pip install opencv-python-headless") from None
        self._resize = functools.partial(cv2.resize, dsize=(self.SIZE, self.SIZE), interpolation=cv2.INTER_AREA)
        self.base = gym_make(cfg.env, **{"frameskip": 1, **cfg.env_kwargs}).unwrapped
        self.ale = self.base.ale
        self.action_set = self.base._action_set
        self.noop_max, self.episodic_life = cfg.noop_max, cfg.episodic_life
        self.fire_reset = FireReset.needed(self.base)
        height, width = self.ale.getScreenDims()
        self.screens = [np.empty((height, width), np.uint8), np.empty((height, width), np.uint8)]
        self.frames = np.zeros((cfg.frame_stack, self.SIZE, self.SIZE), np.uint8)
        self.observation_space = gym.spaces.Box(0, 255, self.frames.shape, np.uint8)
        self.action_space = gym.spaces.Discrete(len(self.action_set))
        self.episode_return, self.episode_length = 0.0, 0  # RecordEpisodeStatistics
        self.lives, self.game_over = 0, True  # EpisodicLife

    # AtariPreprocessing over AtariEnv(frameskip=1), with RecordEpisodeStatistics on top
    def _frame(self, action: int) -> tuple[float, bool, bool]:
        reward = float(self.ale.act(self.action_set[action], 1.0))
        return reward, self.ale.game_over(with_truncation=False), self.ale.game_truncated()

    def _pooled(self) -> np.ndarray:
        np.maximum(self.screens[0], self.screens[1], out=self.screens[0])
        return self._resize(self.screens[0])

    def _preprocessed_step(self, action: int):
        total, terminated, truncated = 0.0, False, False
        for t in range(self.SKIP):
            reward, terminated, truncated = self._frame(action)
            total += reward
            if terminated or truncated:
                break
            if t == self.SKIP - 2:
                self.ale.getScreenGrayscale(self.screens[1])
            elif t == self.SKIP - 1:
                self.ale.getScreenGrayscale(self.screens[0])
        self.episode_return += total
        self.episode_length += 1
        episode = (self.episode_return, self.episode_length) if terminated or truncated else None
        return self._pooled(), total, terminated, truncated, episode

    def _preprocessed_reset(self, seed: Optional[int]) -> np.ndarray:
        self.base.reset(seed=seed)
        noops = self.base.np_random.integers(1, self.noop_max + 1) if self.noop_max > 0 else 0
        for _ in range(noops):
            _, terminated, truncated = self._frame(0)
            if terminated or truncated:
                self.base.reset(seed=seed)
        self.ale.getScreenGrayscale(self.screens[0])
        self.screens[1].fill(0)
        self.episode_return, self.episode_length = 0.0, 0
        return self._pooled()

    # EpisodicLife (training games with cfg.episodic_life)
    def _life_step(self, action: int):
        obs, reward, terminated, truncated, episode = self._preprocessed_step(action)
        if not self.episodic_life:
            return obs, reward, terminated, truncated, episode
        self.game_over = terminated or truncated
        lives = self.ale.lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, episode

    def _life_reset(self, seed: Optional[int]) -> np.ndarray:
        if not self.episodic_life:
            return self._preprocessed_reset(seed)
        if self.game_over:
            obs = self._preprocessed_reset(seed)
        else:  # continue the same game after a lost life with a no-op step
            obs, _, terminated, truncated, _ = self._preprocessed_step(0)
            if terminated or truncated:
                obs = self._preprocessed_reset(seed)
        self.lives = self.ale.lives()
        return obs

    # FireReset
    def _fire_reset(self, seed: Optional[int]) -> np.ndarray:
        obs = self._life_reset(seed)
        if self.fire_reset:
            for action in (1, 2):
                obs, _, terminated, truncated, _ = self._life_step(action)
                if terminated or truncated:
                    obs = self._life_reset(seed)
        return obs

    # FrameStackObservation (padding "reset"): the public interface
    def reset(self, seed: Optional[int] = None) -> np.ndarray:
        """Start a game (or go on after a lost life); the stacked observation, a view that the next call changes."""
        self.frames[:] = self._fire_reset(seed)
        return self.frames

    def step(self, action: int):
        """``(stacked obs, reward, terminated, truncated, (return, length) of a finished game or None)``."""
        obs, reward, terminated, truncated, episode = self._life_step(action)
        self.frames[:-1] = self.frames[1:]
        self.frames[-1] = obs
        return self.frames, reward, terminated, truncated, episode

    def close(self) -> None:
        self.base.close()


class AtariShare(EnvStackShare):
    """One process's share of the games (``indices``), for :class:`~symrl.envs.split.SplitVectorEnv`: a finished
    game reports its whole-game ``(return, length)`` when the game is over, ``None`` after a lost life."""

    def __init__(self, cfg: EnvSettings, indices: list[int]):
        super().__init__(functools.partial(AtariGame, cfg), indices)

    @staticmethod
    def _start(env: AtariGame, seed: Optional[int]) -> np.ndarray:
        return env.reset(seed)


class AtariGamesVectorEnv(GameSplitVectorEnv):
    """``cfg.n_envs`` :class:`AtariGame` s, split over this process and ``parts - 1`` worker processes.

    Same-step autoreset and symrl's rollout infos (``final_obs`` / ``final_info`` where an episode ended, whole-game
    returns where a game is over).
    """

    def __init__(self, cfg: EnvSettings, parts: int = 1):
        super().__init__(functools.partial(AtariShare, cfg), cfg.n_envs, parts, name="Atari")
