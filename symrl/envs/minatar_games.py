"""MinAtar training games without Gymnasium's wrapper layers; Breakout stepped for all its games at once in NumPy.

:func:`~symrl.envs.make.build_env` makes ``minatar.gym.BaseEnv`` through ``gym.make`` (``PassiveEnvChecker``,
``OrderEnforcing``, ``TimeLimit`` when ``max_episode_steps`` is set) and adds ``RecordEpisodeStatistics``; each
agent step walks those layers and allocates a new 10x10xC grid. :class:`MinAtarShare` does the same steps on the
package's own games: ``minatar.Environment``'s sticky action (one ``rand()`` of the game's ``RandomState`` every
step; the previous action, kept across episodes, repeats when it is below ``sticky_action_prob``), the game's
``act``, the time limit, the episode statistics and the same-step reset, writing each grid into the shared
observation buffer. Environment ``i`` seeded with ``seed + i`` uses ``RandomState(seed + i)`` for its sticky draws
and its game, as ``BaseEnv.reset(seed=...)`` does, so observations, rewards, ends and episode statistics are
identical to the wrapper stack's (``tests/test_minatar_games.py`` checks them step by step).

:class:`VectorBreakout` is minatar's Breakout (``minatar/environments/breakout.py``) rewritten over arrays of
games: each branch of its ``act`` becomes a mask. Stepping 64 games costs about as much as stepping two of the
package's, so Breakout runs in one process; the other four games are the package's code, one game after another,
split over a process per core (:mod:`symrl.envs.split`).
"""

from __future__ import annotations

import functools
from importlib import import_module
from typing import Any, Optional

import gymnasium as gym
import numpy as np

from .registry import env_family, env_spec, is_atari
from .settings import EnvSettings
from .split import SplitVectorEnv
from .vector import finished_infos

# env_kwargs the fused games honour; anything else (render_mode, display_time, ...) takes the wrapper stack
GAME_KWARGS = frozenset({"sticky_action_prob", "difficulty_ramping", "max_episode_steps"})


def fused_minatar_apply(cfg: EnvSettings) -> bool:
    """Whether :class:`MinAtarGamesVectorEnv` reproduces :func:`~symrl.envs.make.build_env`'s stack for ``cfg``."""
    return (env_family(cfg.env) == "minatar" and not is_atari(cfg) and not cfg.bins
            and set(cfg.env_kwargs) <= GAME_KWARGS)


def _game_settings(cfg: EnvSettings) -> dict:
    """The registered kwargs (``game``, ``use_minimal_action_set``) with the run's env_kwargs and minatar's defaults."""
    spec = env_spec(cfg.env)
    return {"sticky_action_prob": 0.1, "difficulty_ramping": True, "max_episode_steps": spec.max_episode_steps,
            **spec.kwargs, **cfg.env_kwargs}


def vectorised(cfg: EnvSettings) -> bool:
    """Whether the game of ``cfg`` is stepped all at once (:class:`VectorBreakout`): one process is enough."""
    return _game_settings(cfg)["game"] in VECTOR_GAMES


class PackageGames:
    """``n`` of the package's games (``minatar.environments.<game>.Env``), acted on one after another."""

    def __init__(self, game: str, ramping: bool, n: int):
        module = import_module(f"minatar.environments.{game}")
        self.games = [module.Env(ramping=ramping) for _ in range(n)]
        self.state_shape = tuple(self.games[0].state_shape())
        self.minimal_action_set = self.games[0].minimal_action_set()

    def set_random(self, k: int, random: np.random.RandomState) -> None:
        self.games[k].random = random

    def act(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each game's ``act`` with its full-set action; rewards and terminal flags."""
        out = [game.act(a) for game, a in zip(self.games, actions.tolist(), strict=True)]
        rewards, terminal = zip(*out, strict=True)
        return np.array(rewards, np.float64), np.array(terminal, bool)

    def reset(self, games: list[int]) -> None:
        for k in games:
            self.games[k].reset()

    def write_states(self, out: np.ndarray, games: Optional[list[int]] = None) -> None:
        """Write the grids of ``games`` (all when None) into their rows of ``out``."""
        for k in range(len(self.games)) if games is None else games:
            out[k] = self.games[k].state()


class VectorBreakout:
    """minatar's Breakout for ``n`` games at once: the same rules, positions and draws as its ``Env``.

    The ball moves one cell along a diagonal each step (direction 0: up-left, 1: up-right, 2: down-right,
    3: down-left); a side wall flips x, the top flips y, a brick is removed (+1, once per contact: ``strike``) and
    flips y with the ball kept in its row; at the bottom row the paddle under the ball's old or new column bounces
    it, otherwise the game is over. Three new rows of bricks appear when the ball reaches the bottom row with none
    left. A reset draws the ball's start (left corner going right or right corner going left) with ``randint(2)``.
    """

    state_shape = (10, 10, 4)  # paddle, ball, trail, brick
    minimal_action_set = [0, 1, 3]  # n, l, r of the full set n l u r d f
    FLIP_X = np.array([1, 0, 3, 2])
    FLIP_Y = np.array([3, 2, 1, 0])
    REVERSE = np.array([2, 3, 0, 1])  # the paddle's edge sends the ball back the way it came
    DX = np.array([-1, 1, 1, -1])
    DY = np.array([-1, -1, 1, 1])

    def __init__(self, game: str, ramping: bool, n: int):  # Breakout has no difficulty ramp
        self.n = n
        self.random = [np.random.RandomState() for _ in range(n)]
        self.rows = np.arange(n)
        self.ball_x, self.ball_y, self.ball_dir = (np.zeros(n, np.int64) for _ in range(3))
        self.pos, self.last_x, self.last_y = (np.zeros(n, np.int64) for _ in range(3))
        self.strike = np.zeros(n, bool)
        self.bricks = np.zeros((n, 10, 10), bool)
        self.reset(list(range(n)))

    def set_random(self, k: int, random: np.random.RandomState) -> None:
        self.random[k] = random

    def reset(self, games: list[int]) -> None:
        """Start ``games`` again: each draws its ball's start from its own ``RandomState``."""
        right = np.array([self.random[k].randint(2) for k in games], bool)  # 0: left corner going right
        self.ball_x[games] = np.where(right, 9, 0)
        self.ball_dir[games] = np.where(right, 3, 2)
        self.ball_y[games], self.pos[games] = 3, 4
        self.bricks[games] = False
        self.bricks[games, 1:4, :] = True
        self.strike[games] = False
        self.last_x[games], self.last_y[games] = self.ball_x[games], self.ball_y[games]

    def act(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One step of every game with its full-set action (1 = left, 3 = right); rewards and game-over flags."""
        self.pos = np.where(actions == 1, np.maximum(self.pos - 1, 0), np.where(actions == 3, np.minimum(self.pos + 1, 9),
                                                                                  self.pos))
        self.last_x, self.last_y = self.ball_x, self.ball_y
        direction = self.ball_dir
        new_x, new_y = self.ball_x + self.DX[direction], self.ball_y + self.DY[direction]
        side = (new_x < 0) | (new_x > 9)
        new_x = np.clip(new_x, 0, 9)
        direction = np.where(side, self.FLIP_X[direction], direction)
        top = new_y < 0
        new_y = np.maximum(new_y, 0)
        brick = ~top & self.bricks[self.rows, new_y, new_x]
        hit = brick & ~self.strike  # the first step in contact with a brick breaks it
        bottom = ~top & ~brick & (new_y == 9)
        cleared = bottom & ~self.bricks.any(axis=(1, 2))
        self.bricks[cleared, 1:4, :] = True
        self.bricks[self.rows[hit], new_y[hit], new_x[hit]] = False
        under_old = bottom & (self.ball_x == self.pos)
        under_new = bottom & ~under_old & (new_x == self.pos)
        direction = np.where(top | hit | under_old, self.FLIP_Y[direction],
                             np.where(under_new, self.REVERSE[direction], direction))
        new_y = np.where(hit | under_old | under_new, self.last_y, new_y)
        self.strike = brick
        self.ball_x, self.ball_y, self.ball_dir = new_x, new_y, direction
        return hit.astype(np.float64), bottom & ~under_old & ~under_new

    def write_states(self, out: np.ndarray, games: Optional[list[int]] = None) -> None:
        """Write every game's grid into ``out`` (``games``: the ones that must be current; all are, and writing all
        at once is cheaper than picking rows)."""
        out[:] = False
        out[self.rows, 9, self.pos, 0] = True
        out[self.rows, self.ball_y, self.ball_x, 1] = True
        out[self.rows, self.last_y, self.last_x, 2] = True
        out[..., 3] = self.bricks


VECTOR_GAMES = {"breakout": VectorBreakout}


class MinAtarShare:
    """One process's share of the games (``indices``, consecutive), for :class:`~symrl.envs.split.SplitVectorEnv`:
    a finished game reports its ``(return, length)``."""

    def __init__(self, cfg: EnvSettings, indices: list[int]):
        settings = _game_settings(cfg)
        self.indices, n = indices, len(indices)
        self.rows = slice(indices[0], indices[-1] + 1)
        game = settings["game"]
        self.games = VECTOR_GAMES.get(game, PackageGames)(game, bool(settings["difficulty_ramping"]), n)
        self.sticky = float(settings["sticky_action_prob"])
        self.max_steps = settings["max_episode_steps"]
        minimal = settings.get("use_minimal_action_set", False)  # -v1 ids
        self.action_set = np.array(self.games.minimal_action_set if minimal else range(6), np.int64)
        # BaseEnv's spaces
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=self.games.state_shape, dtype=bool)
        self.action_space = gym.spaces.Discrete(len(self.action_set))
        self.random = [np.random.RandomState() for _ in range(n)]  # minatar.Environment's, until a seeded reset
        self.last_action = np.zeros(n, np.int64)  # kept across episodes, as minatar.Environment does
        self.steps = np.zeros(n, np.int64)  # TimeLimit's count
        self.returns, self.lengths = np.zeros(n), np.zeros(n, np.int64)  # RecordEpisodeStatistics'
        self.buffers: Any

    def _start(self, games: list[int]) -> None:
        self.games.reset(games)
        self.steps[games] = 0
        self.returns[games] = 0.0
        self.lengths[games] = 0

    def reset(self, seed: Optional[int]) -> None:
        for k, i in enumerate(self.indices):
            if seed is not None:  # BaseEnv.reset(seed=...): one RandomState for the sticky draws and the game
                self.random[k] = np.random.RandomState(seed + i)
                self.games.set_random(k, self.random[k])
        self._start(list(range(len(self.indices))))
        self.games.write_states(self.buffers.obs[self.rows])

    def step(self, actions: np.ndarray) -> dict[int, Any]:
        b, rows = self.buffers, self.rows
        wanted = self.action_set[actions[rows]]
        draws = np.array([random.rand() for random in self.random])
        self.last_action = np.where(draws < self.sticky, self.last_action, wanted)
        rewards, terminated = self.games.act(self.last_action)
        self.steps += 1
        self.returns += rewards
        self.lengths += 1
        truncated = self.steps >= self.max_steps if self.max_steps is not None else np.zeros_like(terminated)
        b.rewards[rows], b.terminated[rows], b.truncated[rows] = rewards, terminated, truncated
        obs = b.obs[rows]
        self.games.write_states(obs)
        ended = np.flatnonzero(terminated | truncated).tolist()
        if not ended:
            return {}
        finished = {}
        for k in ended:
            i = self.indices[k]
            b.final_obs[i] = obs[k]
            finished[i] = (self.returns[k], self.lengths[k])
        self._start(ended)
        self.games.write_states(obs, ended)
        return finished

    def close(self) -> None:
        pass


class MinAtarGamesVectorEnv(SplitVectorEnv):
    """``cfg.n_envs`` MinAtar games (:class:`MinAtarShare`), split over this process and ``parts - 1`` worker
    processes (one process for a vectorised game). Same-step autoreset and symrl's rollout infos."""

    def __init__(self, cfg: EnvSettings, parts: int = 1):
        super().__init__(functools.partial(MinAtarShare, cfg), cfg.n_envs, 1 if vectorised(cfg) else parts,
                         name="MinAtar")
        self._returns = np.zeros(self.num_envs)
        self._lengths = np.zeros(self.num_envs, np.int64)

    def _infos(self, finished: dict) -> dict:
        done = self.buffers.terminated | self.buffers.truncated
        for i, (episode_return, length) in finished.items():
            self._returns[i], self._lengths[i] = episode_return, length
        return finished_infos(done, done, self.buffers.final_obs, self._returns, self._lengths)
