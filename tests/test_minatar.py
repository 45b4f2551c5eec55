"""MinAtar (Young & Tian 2019) as an environment family: its ids, the ``minatar`` preset, training on all five games,
flip noise on its rewards, save -> load, sweeps on the local backend, and (slow) learning on Breakout.

Everything is real: the minatar package, real training, no mocks. Runs are a few hundred steps with a few
environments each; the learning test is marked slow.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info

import symrl
from symrl import runs
from symrl.algos import a2c_update, ppo_update
from symrl.config import detect_family
from symrl.envs.registry import env_spec
from symrl.policies import ActorCritic
from symrl.sweeps import parse_sweep, run_sweep
from symrl.trainer import Trainer, make_optimizer

GAMES = ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")
MINIMAL_ACTIONS = {"Asterix": 5, "Breakout": 3, "Freeway": 3, "Seaquest": 6, "SpaceInvaders": 4}  # the -v1 ids
QUIET = dict(progress=False, tensorboard=False)
# a few environments and short rollouts; episodes cut at 200 steps so that Freeway (2500 steps) evaluates quickly
TINY = dict(n_envs=4, n_steps=32, batch_size=64, n_epochs=2, eval_freq=128, eval_episodes=2, checkpoint_freq=128,
            env_kwargs={"sticky_action_prob": 0.1, "difficulty_ramping": True, "max_episode_steps": 200}, **QUIET)


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_ids_family_and_preset():
    for game in GAMES:
        for version, actions in (("v0", 6), ("v1", MINIMAL_ACTIONS[game])):
            env_id = f"MinAtar/{game}-{version}"
            assert detect_family(env_id) == "minatar"
            cfg = symrl.make_config("sppo", env_id)
            assert cfg.preset == "minatar" and cfg.network == "mlp" and cfg.sign_reward
            assert (cfg.alpha, cfg.beta, cfg.z) == (0.5, 1.0, -1.0)
            assert cfg.env_kwargs == {"sticky_action_prob": 0.1, "difficulty_ramping": True, "max_episode_steps": 10000}
            env = symrl.envs.make_eval_env(cfg)
            try:
                assert env.observation_space.dtype == np.bool_ and env.observation_space.shape[:2] == (10, 10)
                assert env.action_space == gym.spaces.Discrete(actions)
                assert env.spec.max_episode_steps == 10000  # the preset's time limit
            finally:
                env.close()
    a2c = symrl.make_config("a2c", "MinAtar/Breakout-v1")
    assert (a2c.n_envs, a2c.n_steps, a2c.optimizer) == (16, 5, "rmsprop_tf")
    ppo = symrl.make_config("ppo", "MinAtar/Breakout-v1")
    assert (ppo.n_envs, ppo.n_steps, ppo.batch_size, ppo.learning_rate, ppo.net_arch) == (64, 128, 1024, 5e-3, [64, 64])


def test_bool_grids_are_stored_as_float32_and_run_on_the_numpy_engine():
    cfg = symrl.make_config("ppo", "MinAtar/Breakout-v1", total_steps=128, **{**TINY, "eval_episodes": 0})
    trainer = Trainer(cfg)
    try:
        assert trainer.envs.single_observation_space.dtype == np.bool_
        assert trainer.buffer.obs.dtype == torch.float32 and trainer.buffer.obs.shape == (32, 4, 10, 10, 4)
        assert trainer.engine is not None  # the MLP runs on the NumPy engine
        trainer.collector.collect(trainer.policy, trainer.buffer, trainer.engine)
        assert set(np.unique(trainer.buffer.np.obs)) <= {0.0, 1.0} and trainer.buffer.np.obs.any()
    finally:
        trainer.close()


def test_mlp_runs_hold_numpy_blas_at_one_thread_and_cnn_runs_give_it_back():
    """The NumPy engine's matrix products on one BLAS thread (a second one waits for the environment workers' core);
    a CNN run afterwards in the same process gets BLAS's and PyTorch's thread counts back."""
    def blas_threads() -> list[int]:
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 cores")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # a fresh process's default on 2 cores
        mlp = Trainer(symrl.make_config("ppo", "MinAtar/Breakout-v1", **{**TINY, "eval_episodes": 0}))
        mlp.close()
        assert torch.get_num_threads() == 1 and set(blas_threads()) == {1}
        cnn = Trainer(symrl.make_config("ppo", "PongNoFrameskip-v4", n_envs=1, eval_episodes=0, **QUIET))
        cnn.close()
        assert torch.get_num_threads() == 2 and min(blas_threads()) > 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("algo", ["ppo", "sa2c"])
def test_numpy_engine_update_on_sparse_grids_equals_the_torch_path(algo):
    """On MinAtar's sparse grids the NumPy engine multiplies only a minibatch's non-zero input columns; the update
    must leave the same parameters and logs as the torch path (autograd, torch.optim) on the same rollout."""
    cfg = symrl.make_config(algo, "MinAtar/Seaquest-v1", total_steps=128, **{**TINY, "eval_episodes": 0})
    trainer = Trainer(cfg)
    try:
        trainer.collector.collect(trainer.policy, trainer.buffer, trainer.engine)
    finally:
        trainer.close()
    batch = trainer._batch()
    assert batch.obs.reshape(len(batch), -1).any(0).float().mean() < 0.75  # the engine's sparse path is taken
    reference = ActorCritic(trainer.envs.single_observation_space, trainer.envs.single_action_space, cfg)
    reference.load_state_dict(trainer.policy.state_dict())
    optimizer = make_optimizer(cfg, reference)
    torch.manual_seed(7)
    if algo == "ppo":
        expected = ppo_update(reference, optimizer, batch, cfg, 0.2)
    else:
        expected = a2c_update(reference, optimizer, batch, cfg)
    torch.manual_seed(7)  # the same minibatch order
    got = trainer.update(batch, 0.2)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-5) or (np.isnan(value) and np.isnan(got[key])), key
    for a, b in zip(reference.parameters(), trainer.policy.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("game, algo", [("Asterix", "a2c"), ("Breakout", "ppo"), ("Freeway", "sppo"),
                                        ("Seaquest", "sa2c"), ("SpaceInvaders", "ppo")])
def test_every_game_trains_and_evaluates(tmp_path, game, algo):
    out = tmp_path / "run"
    result = symrl.train(algo=algo, env=f"MinAtar/{game}-v1", total_steps=256, seed=1, out=out, **TINY)
    status = json.loads((out / runs.STATUS).read_text())
    assert status["state"] == "finished" and result.steps == 256
    assert all(np.isfinite(float(row["loss"])) for row in read_rows(out / runs.METRICS))
    evals = read_rows(out / runs.EVAL)
    assert [int(row["step"]) for row in evals] == [128, 256]
    for row in evals:  # raw game scores: sums of non-negative integer rewards
        assert int(row["episodes"]) == 2 and float(row["mean_return"]) >= 0
    if game == "Freeway":  # no random Freeway episode ends before its own 2500 steps: the 200-step limit cuts them
        lengths = [float(row["ep_length_mean"]) for row in read_rows(out / runs.METRICS) if row["ep_length_mean"]]
        assert lengths and all(length == 200 for length in lengths if np.isfinite(length))


def test_flip_noise_swaps_the_sign_clipped_rewards():
    """r <- 1 - r on MinAtar's rewards clipped to {0, 1}: with p = 1 a rollout's mostly-zero rewards become mostly 1."""
    means = {}
    for noise in (None, "flip:1.0"):
        cfg = symrl.make_config("ppo", "MinAtar/Breakout-v1", total_steps=128, reward_noise=noise, **TINY)
        trainer = Trainer(cfg)
        try:
            trainer.collector.collect(trainer.policy, trainer.buffer, trainer.engine)
        finally:
            trainer.close()
        rewards = trainer.buffer.np.rewards
        assert set(np.unique(rewards)) <= {0.0, 1.0}
        means[noise] = rewards.mean()
    assert means[None] < 0.2 and means["flip:1.0"] == pytest.approx(1 - means[None])


def test_flip_noise_run_saves_loads_and_acts_the_same(tmp_path):
    out = tmp_path / "run"
    result = symrl.train(algo="sppo", env="MinAtar/SpaceInvaders-v1", total_steps=256, reward_noise="flip:0.1",
                         out=out, **TINY)
    assert result.config.reward_noise == "flip:0.1"
    agent = symrl.load(out)
    env = agent.make_env()
    obs = []
    observation, _ = env.reset(seed=3)
    for _ in range(20):
        obs.append(observation)
        observation, *_ = env.step(env.action_space.sample())
    env.close()
    batch = np.stack(obs)
    assert np.array_equal(agent.act(batch, deterministic=True), result.agent.act(batch, deterministic=True))
    torch.manual_seed(0)
    sampled = agent.act(batch)  # stochastic by default, as on Atari
    torch.manual_seed(0)
    assert np.array_equal(sampled, result.agent.act(batch))
    assert np.array_equal(agent.evaluate(episodes=3, seed=5), agent.evaluate(episodes=3, seed=5))  # clean, seeded
    video = agent.make_env(render_mode="rgb_array")  # what symrl eval --video records
    video.reset(seed=0)
    frame = video.render()
    video.close()
    assert frame.dtype == np.uint8 and frame.shape == (160, 160, 3) and frame.max() > 0


def test_unknown_minatar_id_is_one_error_line_with_a_suggestion(tmp_path):
    """In a fresh interpreter (nothing registered yet), the way a user meets it."""
    proc = subprocess.run([sys.executable, "-m", "symrl.cli", "train", "--algo", "ppo", "--env", "MinAtar/Breakoutt-v1",
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: unknown environment id 'MinAtar/Breakoutt-v1'")
    assert "did you mean MinAtar/Breakout-v1" in lines[0]
    assert not (tmp_path / "run").exists()
    with pytest.raises(symrl.SymrlError, match="did you mean MinAtar/SpaceInvaders"):
        env_spec("MinAtar/SpaceInvader-v1")


def test_local_sweep_workers_find_minatar_ids(tmp_path):
    """The sweep's worker processes start fresh (spawn): they register MinAtar's ids themselves."""
    spec = {"out": str(tmp_path / "out"), "steps": 128, "seeds": 1, "algorithms": ["sppo"],
            "envs": ["MinAtar/Breakout-v1"], "noise": {"clean": None, "flip": "flip:0.1"},
            "overrides": {**TINY, "eval_freq": 128}}
    sweep = parse_sweep(spec)
    summary = run_sweep(sweep, workers=1, progress=False)
    assert summary.count("done") == 2, summary.to_dict()
    for cell in sweep.cells:
        run_dir = sweep.run_dir(cell)
        assert run_dir.parent.parent.parent.name == "MinAtar_Breakout-v1"
        assert runs.read_status(run_dir)["state"] == "finished"
        assert len(read_rows(run_dir / runs.EVAL)) == 1


@pytest.mark.slow
def test_ppo_learns_breakout(tmp_path):
    """PPO with the minatar preset on Breakout, 250k steps (under a minute on 2 cores), well above the uniform-random
    policy's score measured on the same evaluation seeds and episodes."""
    episodes, seed = 30, 123
    result = symrl.train(algo="ppo", env="MinAtar/Breakout-v1", total_steps=250_000, seed=0, eval_episodes=0,
                         out=tmp_path / "run", **QUIET)
    trained = result.agent.evaluate(episodes=episodes, seed=seed).mean()

    env = result.agent.make_env()
    env.action_space.seed(seed)
    random_returns = []
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total, done = total + reward, terminated or truncated
        random_returns.append(total)
    env.close()
    random_score = float(np.mean(random_returns))
    assert random_score < 1.0
    assert trained > max(4 * random_score, random_score + 3), (trained, random_score)
