"""MinAtar training games without Gymnasium's wrapper layers; Asterix, Breakout and SpaceInvaders stepped for all their
games at once in NumPy.

:func:`~symrl.envs.make.build_env` makes ``minatar.gym.BaseEnv`` through ``gym.make`` (``PassiveEnvChecker``,
``OrderEnforcing``, ``TimeLimit`` when ``max_episode_steps`` is set) and adds ``RecordEpisodeStatistics``; each
agent step walks those layers and allocates a new 10x10xC grid. :class:`MinAtarShare` does the same steps on the
package's own games: ``minatar.Environment``'s sticky action (one ``rand()`` of the game's ``RandomState`` every
step; the previous action, kept across episodes, repeats when it is below ``sticky_action_prob``), the game's
``act``, the time limit, the episode statistics and the same-step reset, writing each grid into the shared
observation buffer. Environment ``i`` seeded with ``seed + i`` uses ``RandomState(seed + i)`` for its sticky draws
and its game, as ``BaseEnv.reset(seed=...)`` does, so observations, rewards, ends and episode statistics are
identical to the wrapper stack's (``tests/test_minatar_games.py`` checks them step by step).

:class:`VectorAsterix`, :class:`VectorBreakout` and :class:`VectorSpaceInvaders` are minatar's games of those names
(``minatar/environments/``) rewritten over arrays of games: each branch of their ``act`` becomes a mask, and every
draw a game makes comes from its own ``RandomState`` in the package's order. Stepping 64 games costs about as much
as stepping a few of the package's (SpaceInvaders is the slowest of the five there: about 28 us a step), so these
run in one process; Freeway and Seaquest are the package's code, one game after another, split over a process per
core (:mod:`symrl.envs.split`).
"""

from __future__ import annotations

import functools
from importlib import import_module
from typing import Any, Optional

import gymnasium as gym
import numpy as np

from .registry import env_family, env_spec, is_atari
from .settings import EnvSettings
from .split import GameSplitVectorEnv

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
    """Whether the game of ``cfg`` is stepped all at once (one of :data:`VECTOR_GAMES`): one process is enough."""
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
        self.pos = np.clip(self.pos + (actions == 3) - (actions == 1), 0, 9)
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
        if bottom.any():
            cleared = bottom & ~self.bricks.any(axis=(1, 2))
            self.bricks[cleared, 1:4, :] = True
        if hit.any():
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


class VectorSpaceInvaders:
    """minatar's SpaceInvaders for ``n`` games at once: the same rules as its ``Env`` (which draws no random numbers).

    A step: the cannon fires (when its cool-down is over) or moves; friendly bullets move up a row, enemy bullets down
    one (one reaching the cannon ends the game); every ``alien_move_timer`` steps the aliens move a column, or a row
    down and turn at an edge (an alien reaching the cannon's row ends the game); every 10 steps the alien nearest to
    the cannon's column (the lower column first on a tie, its lowest alien) shoots; a bullet on an alien kills it
    (+1); a cleared wave respawns, and with ramping on the aliens move one step faster each wave (down to 6).
    """

    state_shape = (10, 10, 6)  # cannon, alien, alien_left, alien_right, friendly_bullet, enemy_bullet
    minimal_action_set = [0, 1, 3, 5]  # n, l, r, f of the full set n l u r d f
    SHOT_COOL_DOWN, MOVE_INTERVAL, SHOT_INTERVAL = 5, 12, 10  # minatar/environments/space_invaders.py

    def __init__(self, game: str, ramping: bool, n: int):
        self.ramping = ramping
        self.rows = np.arange(n)
        self.pos, self.alien_dir, self.move_interval = (np.zeros(n, np.int64) for _ in range(3))
        self.move_timer, self.shot_timer, self.cannon_timer, self.ramp = (np.zeros(n, np.int64) for _ in range(4))
        self.aliens, self.bullets, self.enemy_bullets = (np.zeros((n, 10, 10), bool) for _ in range(3))
        self.reset(list(range(n)))

    def set_random(self, k: int, random: np.random.RandomState) -> None:
        pass  # the game draws nothing

    def reset(self, games: list[int]) -> None:
        self.pos[games] = 5
        self.bullets[games] = self.enemy_bullets[games] = self.aliens[games] = False
        self.aliens[games, 0:4, 2:8] = True
        self.alien_dir[games] = -1
        self.move_interval[games] = self.move_timer[games] = self.MOVE_INTERVAL
        self.shot_timer[games] = self.SHOT_INTERVAL
        self.ramp[games] = self.cannon_timer[games] = 0

    def act(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One step of every game with its full-set action (1 left, 3 right, 5 fire); rewards and game-over flags."""
        rows, aliens = self.rows, self.aliens
        fire = (actions == 5) & (self.cannon_timer == 0)
        self.bullets[rows[fire], 9, self.pos[fire]] = True
        self.cannon_timer[fire] = self.SHOT_COOL_DOWN
        self.pos = np.clip(self.pos + (actions == 3) - (actions == 1), 0, 9)
        self.bullets[:, :9] = self.bullets[:, 1:].copy()  # np.roll up a row, then the bottom row cleared
        self.bullets[:, 9] = False
        self.enemy_bullets[:, 1:] = self.enemy_bullets[:, :9].copy()  # np.roll down a row, then the top row cleared
        self.enemy_bullets[:, 0] = False
        over = self.enemy_bullets[rows, 9, self.pos] | aliens[rows, 9, self.pos]
        move = self.move_timer == 0
        if move.any():
            count = aliens.sum(axis=(1, 2))
            self.move_timer = np.where(move, np.minimum(count, self.move_interval), self.move_timer)
            edge = move & ((aliens[:, :, 0].any(1) & (self.alien_dir < 0)) | (aliens[:, :, 9].any(1) & (self.alien_dir > 0)))
            over |= edge & aliens[:, 9, :].any(1)
            self.alien_dir = np.where(edge, -self.alien_dir, self.alien_dir)
            aliens[edge] = np.roll(aliens[edge], 1, axis=1)  # a row down (np.roll, as minatar does)
            for step in (-1, 1):
                sideways = move & ~edge & (self.alien_dir == step)
                aliens[sideways] = np.roll(aliens[sideways], step, axis=2)
            over |= move & aliens[rows, 9, self.pos]
        shoot = self.shot_timer == 0
        if shoot.any():
            self.shot_timer[shoot] = self.SHOT_INTERVAL
            games = rows[shoot]
            occupied = aliens[games].any(1)  # [games, column]
            # minatar searches the columns by distance to the cannon, the lower column first on a tie
            offset = np.arange(10)[None, :] - self.pos[games, None]
            distance = np.abs(offset) * 2 + (offset > 0)
            column = np.where(occupied, distance, 100).argmin(1)
            lowest = 9 - aliens[games, ::-1, column].argmax(1)  # the highest row index holding an alien there
            self.enemy_bullets[games, lowest, column] = True
        kills = aliens & self.bullets
        rewards = kills.sum(axis=(1, 2)).astype(np.float64)
        aliens &= ~kills
        self.bullets &= ~kills
        self.cannon_timer -= self.cannon_timer > 0
        self.move_timer -= 1
        self.shot_timer -= 1
        cleared = ~aliens.any(axis=(1, 2))
        if cleared.any():
            faster = cleared & (self.move_interval > 6) & self.ramping
            self.move_interval -= faster
            self.ramp += faster
            aliens[cleared, 0:4, 2:8] = True
        return rewards, over

    def write_states(self, out: np.ndarray, games: Optional[list[int]] = None) -> None:
        """Write every game's grid into ``out`` (see :meth:`VectorBreakout.write_states`)."""
        out[:] = False
        out[self.rows, 9, self.pos, 0] = True
        out[..., 1] = self.aliens
        left = self.alien_dir < 0
        out[left, :, :, 2] = self.aliens[left]
        out[~left, :, :, 3] = self.aliens[~left]
        out[..., 4] = self.bullets
        out[..., 5] = self.enemy_bullets


class VectorAsterix:
    """minatar's Asterix for ``n`` games at once: the same rules and the same draws from each game's ``RandomState``.

    Eight lanes (rows 1-8) hold at most one entity each, an enemy or gold moving left or right. Every ``spawn_speed``
    steps a game draws a side (``rand() < 1/2``: from the left, moving right), a kind (``rand() < 1/3``: gold) and, if
    a lane is free, one of the free lanes (``randint``); the player then moves (rows 1-8); an entity on the player's
    cell is collected (gold, +1) or ends the game (enemy), before and after the entities move one cell every
    ``move_speed`` steps (leaving the grid removes them). With ramping, every 101 steps the spawns come one step
    sooner (down to 1) and, every second time, the entities move one step sooner (down to 1).
    """

    state_shape = (10, 10, 4)  # player, enemy, trail, gold
    minimal_action_set = [0, 1, 2, 3, 4]  # n, l, u, r, d of the full set n l u r d f
    RAMP_INTERVAL, SPAWN_SPEED, MOVE_INTERVAL = 100, 10, 5  # minatar/environments/asterix.py
    LANES = np.arange(1, 9)

    def __init__(self, game: str, ramping: bool, n: int):
        self.ramping = ramping
        self.random = [np.random.RandomState() for _ in range(n)]
        self.rows = np.arange(n)
        self.x, self.y = np.zeros(n, np.int64), np.zeros(n, np.int64)
        self.spawn_speed, self.spawn_timer, self.move_speed, self.move_timer = (np.zeros(n, np.int64) for _ in range(4))
        self.ramp_timer, self.ramp_index = np.zeros(n, np.int64), np.zeros(n, np.int64)
        self.alive, self.right, self.gold = (np.zeros((n, 8), bool) for _ in range(3))  # per lane
        self.ex = np.zeros((n, 8), np.int64)  # an entity's column
        self.reset(list(range(n)))

    def set_random(self, k: int, random: np.random.RandomState) -> None:
        self.random[k] = random

    def reset(self, games: list[int]) -> None:
        self.x[games] = self.y[games] = 5
        self.alive[games] = False
        self.spawn_speed[games] = self.spawn_timer[games] = self.SPAWN_SPEED
        self.move_speed[games] = self.move_timer[games] = self.MOVE_INTERVAL
        self.ramp_timer[games], self.ramp_index[games] = self.RAMP_INTERVAL, 0

    def _spawn(self, games: np.ndarray) -> None:
        for k in games.tolist():
            random = self.random[k]
            right = random.rand() < 1 / 2
            gold = random.rand() < 1 / 3
            free = np.flatnonzero(~self.alive[k])
            if free.size:
                lane = free[random.randint(free.size)]
                self.alive[k, lane], self.right[k, lane], self.gold[k, lane] = True, right, gold
                self.ex[k, lane] = 0 if right else 9

    def _collide(self, on_player: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gold on the player's cell collected (removed; counted per game), enemies there: game over."""
        taken = on_player & self.gold
        self.alive &= ~taken
        return taken.sum(1), (on_player & ~self.gold).any(1)

    def act(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One step of every game with its full-set action (1 left, 2 up, 3 right, 4 down); rewards and game overs."""
        spawn = self.spawn_timer == 0
        if spawn.any():
            self._spawn(self.rows[spawn])
            self.spawn_timer[spawn] = self.spawn_speed[spawn]
        self.x = np.clip(self.x + (actions == 3) - (actions == 1), 0, 9)
        self.y = np.clip(self.y + (actions == 4) - (actions == 2), 1, 8)
        here = (self.LANES[None, :] == self.y[:, None]) & (self.ex == self.x[:, None])  # the player's cell
        rewards, over = self._collide(self.alive & here)
        move = self.move_timer == 0
        if move.any():
            self.move_timer[move] = self.move_speed[move]
            moving = self.alive & move[:, None]
            self.ex = np.where(moving, self.ex + np.where(self.right, 1, -1), self.ex)
            self.alive &= ~(moving & ((self.ex < 0) | (self.ex > 9)))
            here = (self.LANES[None, :] == self.y[:, None]) & (self.ex == self.x[:, None])
            taken, hit = self._collide(moving & self.alive & here)
            rewards, over = rewards + taken, over | hit
        self.spawn_timer -= 1
        self.move_timer -= 1
        ramp = self.ramping & ((self.spawn_speed > 1) | (self.move_speed > 1))
        wait = ramp & (self.ramp_timer >= 0)
        self.ramp_timer -= wait
        step = ramp & ~wait
        if step.any():
            self.move_speed -= step & (self.move_speed > 1) & (self.ramp_index % 2 == 1)
            self.spawn_speed -= step & (self.spawn_speed > 1)
            self.ramp_index += step
            self.ramp_timer[step] = self.RAMP_INTERVAL
        return rewards.astype(np.float64), over

    def write_states(self, out: np.ndarray, games: Optional[list[int]] = None) -> None:
        """Write every game's grid into ``out`` (see :meth:`VectorBreakout.write_states`)."""
        out[:] = False
        out[self.rows, self.y, self.x, 0] = True
        k, lane = np.nonzero(self.alive)
        col, row = self.ex[k, lane], lane + 1
        out[k, row, col, np.where(self.gold[k, lane], 3, 1)] = True
        back = np.where(self.right[k, lane], col - 1, col + 1)
        inside = (back >= 0) & (back <= 9)
        out[k[inside], row[inside], back[inside], 2] = True


VECTOR_GAMES = {"asterix": VectorAsterix, "breakout": VectorBreakout, "space_invaders": VectorSpaceInvaders}


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
        # minatar.Environment's random.rand() each step (random_sample is the same draw, called with less overhead)
        draws = np.fromiter(map(np.random.RandomState.random_sample, self.random), np.float64, len(self.random))
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


class MinAtarGamesVectorEnv(GameSplitVectorEnv):
    """``cfg.n_envs`` MinAtar games (:class:`MinAtarShare`), split over this process and ``parts - 1`` worker
    processes (one process for a vectorised game). Same-step autoreset and symrl's rollout infos."""

    def __init__(self, cfg: EnvSettings, parts: int = 1):
        super().__init__(functools.partial(MinAtarShare, cfg), cfg.n_envs, 1 if vectorised(cfg) else parts,
                         name="MinAtar")
