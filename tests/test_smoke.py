"""Smoke runs on each environment family the presets cover: a real Atari game (ale-py), MuJoCo and Box2D.

A few hundred steps each, one short evaluation: they check that the family's wrappers, networks, action
heads, noise and normalisation run end to end and write a complete, finite run directory that loads back.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import gymnasium as gym
import numpy as np

import symrl
from symrl import runs
from symrl.cli import main

FINITE_COLUMNS = ["loss", "policy_loss", "rl_loss", "reverse_loss", "value_loss", "entropy", "grad_norm",
                  "learning_rate", "explained_variance"]
QUIET = dict(progress=False, tensorboard=False)


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def check_run(run_dir: Path, total_steps: int, eval_episodes: int) -> symrl.Agent:
    for name in (runs.CONFIG, runs.METRICS, runs.EVAL, runs.STATUS, runs.CHECKPOINT, runs.MODEL):
        assert (run_dir / name).is_file(), name
    status = json.loads((run_dir / runs.STATUS).read_text())
    assert status["state"] == "finished" and status["step"] == total_steps

    metrics = read_rows(run_dir / runs.METRICS)
    assert metrics and int(metrics[-1]["step"]) == total_steps
    for row in metrics:
        for column in FINITE_COLUMNS:
            assert math.isfinite(float(row[column])), (column, row)

    evals = read_rows(run_dir / runs.EVAL)
    assert evals and int(evals[-1]["step"]) == total_steps
    for row in evals:
        assert int(row["episodes"]) == eval_episodes and math.isfinite(float(row["mean_return"])), row

    agent = symrl.load(run_dir)
    env = agent.make_env()
    obs, _ = env.reset(seed=0)
    action = agent.act(obs)
    if not isinstance(env.action_space, gym.spaces.Box):  # Gaussian actions are not clipped by act()
        assert env.action_space.contains(np.asarray(action, dtype=env.action_space.dtype)), action
    env.step(action)
    env.close()
    return agent


def test_atari_pong_sppo_flip_noise(tmp_path):
    out = tmp_path / "pong"
    result = symrl.train(
        algo="sppo", env="PongNoFrameskip-v4", total_steps=512, reward_noise="flip:0.1",
        n_envs=2, n_steps=32, batch_size=64, n_epochs=1, eval_freq=512, eval_episodes=1,
        env_kwargs={"max_num_frames_per_episode": 2000}, out=out, **QUIET,
    )
    cfg = result.config
    assert cfg.preset == "atari" and cfg.network == "cnn" and cfg.sign_reward and cfg.beta > 0
    assert cfg.reward_noise == "flip:0.1" and cfg.bins == 0
    agent = check_run(out, 512, 1)
    assert agent.policy.cnn and agent.policy_obs_shape == (4, 84, 84)
    assert -21 <= result.evaluations[-1]["mean_return"] <= 21


def test_mujoco_halfcheetah_sppo_bins(tmp_path):
    out = tmp_path / "cheetah"
    result = symrl.train(
        algo="sppo", env="HalfCheetah-v4", bins=11, reward_noise="gaussian:0.05", total_steps=512,
        n_envs=1, n_steps=256, batch_size=128, n_epochs=2, eval_freq=512, eval_episodes=1, out=out, **QUIET,
    )
    cfg = result.config
    assert cfg.preset == "mujoco" and cfg.bins == 11 and cfg.beta > 0 and cfg.norm_obs and cfg.norm_reward
    agent = check_run(out, 512, 1)
    env = agent.make_env()
    assert isinstance(env.action_space, gym.spaces.MultiDiscrete) and list(env.action_space.nvec) == [11] * 6
    env.close()


def test_mujoco_inverted_pendulum_ppo_gaussian_normalised(tmp_path):
    out = tmp_path / "ip"
    result = symrl.train(
        algo="ppo", env="InvertedPendulum-v4", norm_obs=True, norm_reward=True, total_steps=512,
        n_envs=2, n_steps=128, batch_size=128, n_epochs=2, eval_freq=256, eval_episodes=2, out=out, **QUIET,
    )
    assert result.config.bins == 0 and result.config.beta == 0
    agent = check_run(out, 512, 2)
    assert agent.policy.kind == "continuous"
    assert agent.obs_norm.enabled and agent.obs_norm.rms.count > 512
    assert len(read_rows(out / runs.EVAL)) == 2


def test_box2d_lunarlander_continuous_a2c(tmp_path):
    out = tmp_path / "llc"
    result = symrl.train(algo="a2c", env="LunarLanderContinuous-v3", total_steps=512, n_envs=2,
                         eval_freq=512, eval_episodes=1, out=out, **QUIET)
    assert result.config.preset == "box2d" and result.config.optimizer == "rmsprop" and result.config.bins == 0
    agent = check_run(out, 512, 1)
    assert agent.policy.kind == "continuous"


def test_box2d_lunarlander_sa2c_cli(tmp_path, capsys):
    out = tmp_path / "ll"
    code = main(["train", "--algo", "sa2c", "--env", "LunarLander-v3", "--steps", "512", "--n-envs", "2",
                 "--eval-freq", "256", "--eval-episodes", "1", "--reward-noise", "uniform:0.1", "--no-progress",
                 "--set", "tensorboard=false", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    agent = check_run(out, 512, 1)
    assert agent.config.beta > 0 and agent.config.bins == 0 and agent.policy.kind == "discrete"
    assert len(read_rows(out / runs.EVAL)) == 2


def test_box2d_car_racing_pixels_through_the_cnn(tmp_path):
    """[96, 96, 3] frames, channels last as Gymnasium gives them: the preset picks the Nature CNN on raw pixels."""
    out = tmp_path / "car"
    result = symrl.train(algo="ppo", env="CarRacing-v3", total_steps=64, n_steps=32, batch_size=32, n_epochs=1,
                         eval_freq=64, eval_episodes=1, env_kwargs={"max_episode_steps": 40}, out=out, **QUIET)
    assert result.config.network == "cnn" and not result.config.norm_obs
    agent = check_run(out, 64, 1)
    assert agent.policy.cnn and agent.policy.actor_body.channels_last_input
