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
games over this process and one worker process per further core (``fork``, observations in shared memory).
Which process steps which game changes no game, so results do not depend on the split. On 2 cores 8 Pong games
step about 2.4x faster than the wrapper stack in one process (``benchmarks/atari_parts.py``).
"""

from __future__ import annotations

import functools
import multiprocessing
import signal
import sys
from typing import Optional

import gymnasium as gym
import numpy as np

from ..config import Config
from ..errors import SymrlError
from .registry import gym_make
from .vector import finished_infos
from .wrappers import FireReset

# env_kwargs an AtariGame passes on to AtariEnv; anything else (obs_type, frameskip, ...) takes the wrapper stack
GAME_KWARGS = frozenset({"repeat_action_probability", "full_action_space", "mode", "difficulty",
                         "max_num_frames_per_episode"})


def fused_games_apply(cfg: Config) -> bool:
    """Whether :class:`AtariGamesVectorEnv` reproduces :func:`~symrl.envs.make.build_env`'s stack for ``cfg``."""
    return not cfg.bins and set(cfg.env_kwargs) <= GAME_KWARGS


class AtariGame:
    """One Atari training game: the wrapper stack of ``build_env(cfg, train=True)``, one method per wrapper."""

    SKIP, SIZE = 4, 84

    def __init__(self, cfg: Config):
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


def _reset_games(games: list, indices, seed: Optional[int], obs: np.ndarray) -> None:
    for game, i in zip(games, indices, strict=True):
        obs[i] = game.reset(None if seed is None else seed + int(i))


def _step_games(games: list, indices, actions: np.ndarray, obs: np.ndarray, final_obs: np.ndarray) -> list:
    """Step environments ``indices`` (``games[k]`` is environment ``indices[k]``), resetting finished ones; write
    their observations into ``obs`` / ``final_obs``; ``[(reward, terminated, truncated, episode)]``."""
    results = []
    for game, i, action in zip(games, indices, actions, strict=True):
        frames, reward, terminated, truncated, episode = game.step(action)
        if terminated or truncated:
            final_obs[i] = frames
            frames = game.reset()
        obs[i] = frames
        results.append((reward, terminated, truncated, episode))
    return results


def _worker(cfg: Config, indices: list, pipe, obs_memory, final_memory, shape: tuple) -> None:
    """A worker process: steps its games on command, observations through shared memory."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle
    obs = np.frombuffer(obs_memory, np.uint8).reshape(shape)
    final_obs = np.frombuffer(final_memory, np.uint8).reshape(shape)
    try:
        games = [AtariGame(cfg) for _ in indices]
        while True:
            command, data = pipe.recv()
            if command == "step":
                pipe.send(("ok", _step_games(games, indices, data, obs, final_obs)))
            elif command == "reset":
                _reset_games(games, indices, data, obs)
                pipe.send(("ok", None))
            else:
                break
    except (EOFError, KeyboardInterrupt):
        return
    except Exception as exc:  # noqa: BLE001  (reported to the main process, which raises it)
        pipe.send(("error", f"{type(exc).__name__}: {exc}"))


def _stopped(process) -> SymrlError:
    return SymrlError(f"an Atari worker process stopped (exit code {process.exitcode}); "
                      "rerun, or use --vec-backend async")


class AtariGamesVectorEnv(gym.vector.VectorEnv):
    """``cfg.n_envs`` :class:`AtariGame` s, split over this process and ``parts - 1`` worker processes.

    Same-step autoreset and symrl's rollout infos (``final_obs`` / ``final_info`` where an episode ended, whole-game
    returns where a game is over). This process steps the first share of the games while the workers step theirs.
    """

    def __init__(self, cfg: Config, parts: int = 1):
        self.num_envs = cfg.n_envs
        parts = max(1, min(parts, self.num_envs))
        shares = [list(map(int, share)) for share in np.array_split(np.arange(self.num_envs), parts)]
        self.parts, self._local = len(shares), shares[0]
        self.games = [AtariGame(cfg) for _ in self._local]  # bad settings fail here, in this process
        frames = self.games[0].frames
        shape = (self.num_envs, *frames.shape)
        # fork: starts at once and re-runs nothing of the user's script (spawn would re-import its __main__)
        context = multiprocessing.get_context("fork" if sys.platform == "linux" else None)
        obs_memory, final_memory = (context.RawArray("B", int(np.prod(shape))) for _ in range(2))
        self._obs = np.frombuffer(obs_memory, np.uint8).reshape(shape)
        self._final_obs = np.frombuffer(final_memory, np.uint8).reshape(shape)
        self._workers = []
        for share in shares[1:]:
            pipe, child = context.Pipe()
            process = context.Process(target=_worker, args=(cfg, share, child, obs_memory, final_memory, shape),
                                      daemon=True, name="symrl-atari")
            process.start()
            child.close()
            self._workers.append((share, pipe, process))
        self.single_observation_space = gym.spaces.Box(0, 255, frames.shape, np.uint8)
        self.single_action_space = gym.spaces.Discrete(len(self.games[0].action_set))
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self.metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
        self._rewards = np.zeros(self.num_envs, np.float64)
        self._terminated = np.zeros(self.num_envs, bool)
        self._truncated = np.zeros(self.num_envs, bool)
        self._game_over = np.zeros(self.num_envs, bool)
        self._returns = np.zeros(self.num_envs)
        self._lengths = np.zeros(self.num_envs, np.int64)

    def _send(self, pipe, process, message: tuple) -> None:
        try:
            pipe.send(message)
        except (BrokenPipeError, ConnectionError):
            raise _stopped(process) from None

    def _receive(self, pipe, process):
        try:
            status, data = pipe.recv()
        except (EOFError, ConnectionError):
            raise _stopped(process) from None
        if status == "error":
            raise SymrlError(f"an Atari worker process failed: {data}")
        return data

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        for _, pipe, process in self._workers:
            self._send(pipe, process, ("reset", seed))
        _reset_games(self.games, self._local, seed, self._obs)
        for _, pipe, process in self._workers:
            self._receive(pipe, process)
        return self._obs.copy(), {}

    def step(self, actions: np.ndarray):
        actions = np.asarray(actions)
        for share, pipe, process in self._workers:
            self._send(pipe, process, ("step", actions[share]))
        results = dict(zip(self._local, _step_games(self.games, self._local, actions[self._local], self._obs,
                                                    self._final_obs), strict=True))
        for share, pipe, process in self._workers:
            results.update(zip(share, self._receive(pipe, process), strict=True))
        self._game_over[:] = False
        for i, (reward, terminated, truncated, episode) in results.items():
            self._rewards[i], self._terminated[i], self._truncated[i] = reward, terminated, truncated
            if episode is not None:
                self._game_over[i] = True
                self._returns[i], self._lengths[i] = episode
        done = self._terminated | self._truncated
        infos = finished_infos(done, self._game_over, self._final_obs, self._returns, self._lengths)
        return self._obs.copy(), self._rewards.copy(), self._terminated.copy(), self._truncated.copy(), infos

    def close_extras(self, **kwargs) -> None:
        for _, pipe, process in self._workers:
            try:
                pipe.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
        self._workers = []
        for game in self.games:
            game.base.close()
