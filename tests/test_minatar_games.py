"""The fused MinAtar training games (and Breakout vectorised over its games) equal Gymnasium's wrapper stack step by
step: the real minatar package on both sides, no mocks."""

from __future__ import annotations

import numpy as np
import pytest
from same_training import assert_steps_like_the_wrapper_stack, assert_trains_like_the_wrapper_stack

import symrl
from symrl.envs import make_train_envs
from symrl.envs.minatar_games import MinAtarGamesVectorEnv, VectorAsterix, VectorBreakout, VectorSpaceInvaders
from symrl.envs.split import EnvStackShare
from symrl.envs.vector import SerialVectorEnv

GAMES = ["Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders"]


@pytest.mark.parametrize("game", GAMES)
def test_each_game_equals_the_wrapper_stack(game):
    cfg = symrl.make_config("ppo", f"MinAtar/{game}-v1", n_envs=4)
    seen = assert_steps_like_the_wrapper_stack(cfg, MinAtarGamesVectorEnv(cfg, parts=2), steps=400, seed=3)
    assert seen["reward"] > 0 or game == "Freeway"  # random play scores in all but Freeway
    assert seen["terminated"] >= 1 or game == "Freeway"  # Freeway's own limit is 2500 steps


def test_full_action_set_time_limit_and_no_sticky_actions_equal_the_wrapper_stack():
    cfg = symrl.make_config("ppo", "MinAtar/Breakout-v0", n_envs=5,
                            env_kwargs={"sticky_action_prob": 0.0, "max_episode_steps": 12})
    seen = assert_steps_like_the_wrapper_stack(cfg, MinAtarGamesVectorEnv(cfg), steps=300, seed=7)
    assert seen["truncated"] >= 1 and seen["terminated"] >= 1 and seen["games"] == seen["truncated"] + seen["terminated"]
    cfg = symrl.make_config("ppo", "MinAtar/Freeway-v1", n_envs=2, env_kwargs={"difficulty_ramping": False,
                                                                               "max_episode_steps": 50})
    seen = assert_steps_like_the_wrapper_stack(cfg, MinAtarGamesVectorEnv(cfg, parts=2), steps=120, seed=1)
    assert seen["truncated"] == 4


def _step_both(vec, games: list, live: np.ndarray, rng: np.random.Generator, grids: np.ndarray) -> tuple:
    """One step of the vectorised games and of the package's live ones, with the same random full-set actions;
    asserts equal rewards, ends and grids. Returns the vectorised games' ``(rewards, over)``."""
    actions = rng.choice([0, 1, 2, 3, 4, 5], len(games))
    rewards, over = vec.act(actions)
    vec.write_states(grids)
    for k in np.flatnonzero(live):
        r, terminal = games[k].act(int(actions[k]))
        assert (rewards[k], over[k]) == (r, terminal), k
        np.testing.assert_array_equal(grids[k], games[k].state(), err_msg=str(k))
    return rewards, over


def _set_package_state(env, k: int, vec: VectorBreakout) -> None:
    """Copy game ``k`` of ``vec`` into the package's Breakout ``env``."""
    env.ball_x, env.ball_y, env.ball_dir = int(vec.ball_x[k]), int(vec.ball_y[k]), int(vec.ball_dir[k])
    env.pos, env.last_x, env.last_y = int(vec.pos[k]), int(vec.last_x[k]), int(vec.last_y[k])
    env.strike, env.terminal = bool(vec.strike[k]), False
    env.brick_map = vec.bricks[k].astype(float)


def test_vector_breakout_equals_the_package_game_from_any_position():
    """From random positions, directions, paddles, strike flags and brick maps (empty ones included, so the refill
    branch runs), every step's reward, end and grid equal minatar's Breakout."""
    from minatar.environments.breakout import Env  # noqa: PLC0415

    rng = np.random.default_rng(0)
    n = 400
    vec = VectorBreakout("breakout", True, n)
    vec.ball_x, vec.ball_y = rng.integers(0, 10, n), rng.integers(0, 9, n)
    vec.ball_dir, vec.pos = rng.integers(0, 4, n), rng.integers(0, 10, n)
    vec.last_x, vec.last_y = vec.ball_x.copy(), vec.ball_y.copy()
    vec.strike = rng.random(n) < 0.3
    vec.bricks = (rng.random((n, 10, 10)) < rng.random((n, 1, 1))) & (np.arange(10) < 9)[None, :, None]
    vec.bricks[: n // 4] = False
    vec.bricks[vec.rows, vec.ball_y, vec.ball_x] = False  # the ball is not inside a brick
    games = []
    for k in range(n):
        games.append(Env())
        _set_package_state(games[k], k, vec)
    live = np.ones(n, bool)
    grids = np.zeros((n, 10, 10, 4), bool)
    events = {"hit": 0, "refill": 0, "over": 0, "bounce": 0}
    for _ in range(12):
        before = vec.bricks.sum(axis=(1, 2))
        rewards, over = _step_both(vec, games, live, rng, grids)
        events["hit"] += int(rewards[live].sum())
        events["refill"] += int((live & (before == 0) & (vec.bricks.sum(axis=(1, 2)) == 30)).sum())
        events["over"] += int((live & over).sum())
        events["bounce"] += int((live & (vec.ball_y == 8) & (vec.last_y == 8)).sum())
        live &= ~over
        vec.reset(np.flatnonzero(over).tolist())  # finished games start again (their balls would leave the grid)
    assert min(events.values()) >= 5, events


def test_vector_space_invaders_equals_the_package_game_from_any_position():
    """From random alien waves, bullets, directions, timers and cannon positions (speeds ramped or not), every step's
    reward, end and grid equal minatar's SpaceInvaders; moves, turns at the edges, shots, kills and respawned waves
    all happen."""
    from minatar.environments.space_invaders import Env  # noqa: PLC0415

    rng = np.random.default_rng(1)
    n = 300
    vec = VectorSpaceInvaders("space_invaders", True, n)
    vec.pos = rng.integers(0, 10, n)
    vec.aliens = (rng.random((n, 10, 10)) < rng.random((n, 1, 1)) * 0.4) & (np.arange(10) < 8)[None, :, None]
    vec.aliens[: n // 5] = False
    vec.aliens[: n // 5, 0, 4] = True  # one alien left: the next kill clears the wave
    vec.aliens[vec.rows, 0, 0] |= ~vec.aliens.any(axis=(1, 2))
    vec.bullets = rng.random((n, 10, 10)) < 0.1
    vec.enemy_bullets = rng.random((n, 10, 10)) < 0.05
    vec.alien_dir = rng.choice([-1, 1], n)
    vec.move_interval = rng.integers(5, 13, n)
    vec.move_timer, vec.shot_timer = rng.integers(0, 4, n), rng.integers(0, 4, n)
    vec.cannon_timer, vec.ramp = rng.integers(0, 3, n), rng.integers(0, 3, n)
    vec.ramping = rng.random(n) < 0.7
    games = []
    for k in range(n):
        env = Env(ramping=bool(vec.ramping[k]))
        env.pos, env.alien_dir, env.enemy_move_interval = int(vec.pos[k]), int(vec.alien_dir[k]), int(vec.move_interval[k])
        env.alien_move_timer, env.alien_shot_timer = int(vec.move_timer[k]), int(vec.shot_timer[k])
        env.shot_timer, env.ramp_index, env.terminal = int(vec.cannon_timer[k]), int(vec.ramp[k]), False
        env.alien_map, env.f_bullet_map = vec.aliens[k].astype(float), vec.bullets[k].astype(float)
        env.e_bullet_map = vec.enemy_bullets[k].astype(float)
        games.append(env)
    live = np.ones(n, bool)
    grids = np.zeros((n, 10, 10, 6), bool)
    events = {"kill": 0, "over": 0, "wave": 0, "turn": 0, "shot": 0}
    for _ in range(15):
        waves, turning, shooting = vec.ramp.copy(), vec.alien_dir.copy(), vec.shot_timer == 0
        rewards, over = _step_both(vec, games, live, rng, grids)
        events["kill"] += int(rewards[live].sum())
        events["over"] += int((live & over).sum())
        events["wave"] += int((live & (vec.ramp > waves)).sum())
        events["turn"] += int((live & (vec.alien_dir != turning)).sum())
        events["shot"] += int((live & shooting).sum())
        live &= ~over
    assert min(events.values()) >= 3, events


def test_vector_asterix_equals_the_package_game_from_any_position():
    """From random lanes of enemies and gold, timers, speeds and ramps (on or off), every step's reward, end and grid,
    and every draw from each game's RandomState, equal minatar's Asterix; spawns, gold taken, game overs, entities
    leaving the grid and ramp steps all happen."""
    from minatar.environments.asterix import Env  # noqa: PLC0415

    rng = np.random.default_rng(2)
    n = 300
    vec = VectorAsterix("asterix", True, n)
    vec.x, vec.y = rng.integers(0, 10, n), rng.integers(1, 9, n)
    vec.alive = rng.random((n, 8)) < 0.5
    vec.alive[: n // 6] = True  # every lane taken: a spawn draws its side and kind, then places nothing
    vec.right, vec.gold = rng.random((n, 8)) < 0.5, rng.random((n, 8)) < 0.4
    vec.ex = rng.integers(0, 10, (n, 8))
    vec.spawn_speed, vec.move_speed = rng.integers(1, 11, n), rng.integers(1, 6, n)
    vec.spawn_timer, vec.move_timer = rng.integers(0, 3, n), rng.integers(0, 3, n)
    vec.ramp_timer, vec.ramp_index = rng.integers(-1, 3, n), rng.integers(0, 4, n)
    vec.ramping = rng.random(n) < 0.7
    vec.alive &= ~((np.arange(1, 9)[None, :] == vec.y[:, None]) & (vec.ex == vec.x[:, None]))  # none on the player
    games = []
    for k in range(n):
        env = Env(ramping=bool(vec.ramping[k]))
        vec.random[k], env.random = np.random.RandomState(k), np.random.RandomState(k)  # two equal streams
        env.player_x, env.player_y, env.terminal = int(vec.x[k]), int(vec.y[k]), False
        env.entities = [[int(vec.ex[k, lane]), lane + 1, bool(vec.right[k, lane]), bool(vec.gold[k, lane])]
                        if vec.alive[k, lane] else None for lane in range(8)]
        env.spawn_speed, env.spawn_timer = int(vec.spawn_speed[k]), int(vec.spawn_timer[k])
        env.move_speed, env.move_timer = int(vec.move_speed[k]), int(vec.move_timer[k])
        env.ramp_timer, env.ramp_index = int(vec.ramp_timer[k]), int(vec.ramp_index[k])
        games.append(env)
    live = np.ones(n, bool)
    grids = np.zeros((n, 10, 10, 4), bool)
    events = {"gold": 0, "over": 0, "spawn": 0, "gone": 0, "ramp": 0}
    for _ in range(25):
        spawning, count, ramps = vec.spawn_timer == 0, vec.alive.sum(1), vec.ramp_index.copy()
        rewards, over = _step_both(vec, games, live, rng, grids)
        for k in np.flatnonzero(live):  # the same draws so far
            assert vec.random[k].randint(1 << 30) == games[k].random.randint(1 << 30), k
        events["gold"] += int(rewards[live].sum())
        events["over"] += int((live & over).sum())
        events["spawn"] += int((live & spawning).sum())
        events["gone"] += int((live & (vec.alive.sum(1) < count + spawning - rewards)).sum())
        events["ramp"] += int((live & (vec.ramp_index > ramps)).sum())
        live &= ~over
    assert min(events.values()) >= 3, events


def test_in_process_minatar_training_uses_the_fused_games_unless_env_kwargs_need_the_wrappers():
    envs = make_train_envs(symrl.make_config("ppo", "MinAtar/Breakout-v1", n_envs=4))
    assert isinstance(envs, MinAtarGamesVectorEnv) and envs.parts == 1  # vectorised: one process
    envs.close()
    cfg = symrl.make_config("ppo", "MinAtar/Breakout-v1", n_envs=2, env_kwargs={"display_time": 10})
    envs = make_train_envs(cfg)
    assert isinstance(envs, SerialVectorEnv) or isinstance(envs.share, EnvStackShare)
    envs.close()


def test_training_on_the_fused_games_leaves_the_same_weights_as_on_the_wrapper_stack(monkeypatch):
    """Two PPO iterations on Breakout with the minatar preset: same rollouts, same updates, bit for bit."""
    cfg = symrl.make_config("ppo", "MinAtar/Breakout-v1", n_envs=8, n_steps=32, batch_size=64, n_epochs=2,
                            total_steps=512, eval_episodes=0, progress=False, tensorboard=False, seed=1)
    fused, plain = assert_trains_like_the_wrapper_stack(monkeypatch, cfg, make_train_envs)
    assert isinstance(fused.envs, MinAtarGamesVectorEnv)
    assert isinstance(plain.envs, SerialVectorEnv)
