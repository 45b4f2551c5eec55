"""Gymnasium wrappers symrl adds: action discretisation, the two Atari wrappers Gymnasium lacks, MinAtar's video frames."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from ..errors import SymrlError


def bin_values(low: np.ndarray, high: np.ndarray, bins: int) -> np.ndarray:
    """``[D, K]`` grid of action values: ``np.linspace(low_i, high_i, K)`` per dimension (SPEC 2)."""
    return np.stack([np.linspace(lo, hi, bins) for lo, hi in zip(low, high, strict=True)]).astype(np.float32)


def discretization_grid(space: gym.Space, bins: int, env_name: str) -> np.ndarray:
    """The ``[D, K]`` grid of :func:`bin_values` for a Box action space, or a clear error for any other."""
    if not isinstance(space, gym.spaces.Box):
        raise SymrlError(
            f"--bins discretises Box action spaces, but {env_name} has {type(space).__name__}; drop --bins (bins=0 in Python)"
        )
    low, high = space.low.reshape(-1), space.high.reshape(-1)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise SymrlError("--bins needs finite action bounds; this Box is unbounded, drop --bins")
    return bin_values(low, high, bins)


def grid_actions(grid: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Bin indices ``[..., D]`` -> action values ``[..., D]`` (one environment or a batch)."""
    return grid[np.arange(grid.shape[0]), index]


class DiscretizeAction(gym.ActionWrapper):
    """Box(D) -> MultiDiscrete([K] * D): bin k of dimension i is ``linspace(low_i, high_i, K)[k]``.

    The paper's DA2C / DPPO / DSA2C / DSPPO act through this wrapper on training and evaluation
    environments alike.
    """

    def __init__(self, env: gym.Env, bins: int = 11):
        if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
            raise SymrlError(f"bins must be a whole number >= 2 (the paper uses 11), got {bins!r}")
        super().__init__(env)
        self._shape = env.action_space.shape
        self.grid = discretization_grid(env.action_space, bins, env.spec.id if env.spec else "this env")
        self.action_space = gym.spaces.MultiDiscrete(np.full(self.grid.shape[0], bins, dtype=np.int64))

    def action(self, action):
        return grid_actions(self.grid, np.asarray(action, dtype=np.int64).reshape(-1)).reshape(self._shape)


class EpisodicLife(gym.Wrapper):
    """Atari: a lost life ends the training episode; the game is reset only when it is really over."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.lives = 0
        self.game_over = True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs):
        if self.game_over:
            obs, info = self.env.reset(**kwargs)
        else:  # continue the same game after a lost life with a no-op step
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info


class FireReset(gym.Wrapper):
    """Atari: press FIRE after a reset in games that wait for it (Breakout, ...)."""

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        for action in (1, 2):
            obs, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        return obs, info

    @staticmethod
    def needed(env: gym.Env) -> bool:
        meanings = env.unwrapped.get_action_meanings()
        return len(meanings) >= 3 and meanings[1] == "FIRE"


class MinAtarFrames(gym.Wrapper):
    """MinAtar's ``rgb_array`` frames as videos need them: minatar renders the 10x10 grid as float RGB in [0, 1],
    which a video writer turns into black 10x10 frames; this gives uint8 frames with each cell ``scale`` pixels wide."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, env: gym.Env, scale: int = 16):
        super().__init__(env)
        self.scale = scale

    def render(self):
        frame = np.asarray(self.env.render())
        frame = np.repeat(np.repeat(frame, self.scale, axis=0), self.scale, axis=1)
        return np.round(np.clip(frame, 0.0, 1.0) * 255).astype(np.uint8)
