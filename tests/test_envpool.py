"""The EnvPool training backend (``--vec-backend envpool``), where EnvPool is installed
(``pip install -e .[bench]``): same-step autoreset with final observations and whole-game episode
statistics, and real training runs that evaluate on the Gymnasium environments."""

from __future__ import annotations

import numpy as np
import pytest

import symrl
from symrl.config import make_config
from symrl.errors import SymrlError

envpool = pytest.importorskip("envpool")

from symrl.envs.envpool_backend import EnvPoolVectorEnv  # noqa: E402


def test_truncation_returns_the_final_observation_and_resets_in_the_same_step():
    cfg = make_config("ppo", "HalfCheetah-v4", n_envs=2, vec_env="envpool", seed=3)
    envs = EnvPoolVectorEnv(cfg)
    obs, _ = envs.reset(seed=3)
    total = np.zeros(2)
    actions = np.zeros((2, 6), np.float32)
    for t in range(1000):
        obs, reward, terminated, truncated, infos = envs.step(actions)
        total += reward
        if t < 999:
            assert not (terminated | truncated).any() and not infos
    assert truncated.all() and not terminated.any()  # HalfCheetah's 1000-step limit
    np.testing.assert_allclose(infos["final_info"]["episode"]["r"], total)
    np.testing.assert_array_equal(infos["final_info"]["episode"]["l"], [1000, 1000])
    for i in range(2):  # the returned observation is the reset one, the final one is in the infos
        assert not np.allclose(infos["final_obs"][i], obs[i])
    assert np.abs(obs).max() < 1.0  # a fresh MuJoCo state (reset noise 0.1)
    envs.close()


def test_a_lost_life_ends_the_episode_but_not_the_game():
    """Breakout has 5 lives: episodic life ends an episode per life, and a game (its statistics) every 5."""
    envs = EnvPoolVectorEnv(make_config("ppo", "BreakoutNoFrameskip-v4", n_envs=2, vec_env="envpool", seed=0))
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    terminations, games = 0, []
    for _ in range(1500):
        _, _, terminated, _, infos = envs.step(rng.integers(0, 4, 2))
        terminations += int(terminated.sum())
        final = infos.get("final_info", {}) if infos else {}
        if "episode" in final:
            games += [int(length) for length in final["episode"]["l"][final["_episode"]]]
    envs.close()
    assert len(games) >= 4 and terminations >= 4 * len(games), (terminations, games)
    assert min(games) > 100  # whole games of 5 lives, not single lives restarted as new games


def test_discretised_actions_map_to_bin_values():
    cfg = make_config("sppo", "HalfCheetah-v4", n_envs=1, vec_env="envpool", bins=11)
    envs = EnvPoolVectorEnv(cfg)
    assert envs.single_action_space.nvec.tolist() == [11] * 6
    np.testing.assert_allclose(envs.grid[0], np.linspace(-1, 1, 11))
    envs.reset()
    envs.step(np.full((1, 6), 10))
    envs.close()


@pytest.mark.parametrize("algo", ["ppo", "sppo"])
def test_mujoco_run_trains_and_evaluates(tmp_path, algo):
    result = symrl.train(algo=algo, env="HalfCheetah-v4", vec_env="envpool", total_steps=2048, n_steps=512,
                         eval_freq=1024, eval_episodes=1, progress=False, out=tmp_path / algo)
    assert [row["step"] for row in result.evaluations] == [1024, 2048]
    assert np.isfinite(result.final_return)
    assert (tmp_path / algo / "model.pt").exists()


def test_atari_run_trains_and_evaluates(tmp_path):
    result = symrl.train(algo="ppo", env="PongNoFrameskip-v4", vec_env="envpool", n_envs=2, n_steps=32,
                         batch_size=32, total_steps=128, eval_freq=128, eval_episodes=1, progress=False,
                         out=tmp_path / "pong")
    assert len(result.evaluations) == 1
    assert -21 <= result.final_return <= 21  # a real Pong score from the Gymnasium evaluation env


def test_unknown_task_is_a_clear_error():
    with pytest.raises(SymrlError, match="EnvPool has no task for Taxi-v4"):
        symrl.train(algo="ppo", env="Taxi-v4", vec_env="envpool", total_steps=64, progress=False)
