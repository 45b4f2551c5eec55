"""Learning: every algorithm solves CartPole-v1 and discretised symmetric PPO learns a continuous task.

Budgets are upper bounds; runs stop as soon as an evaluation reaches the target (``stop_return``).
"""

from __future__ import annotations

import pytest

import symrl

CARTPOLE_BUDGET = {"ppo": 60_000, "sppo": 60_000, "a2c": 150_000, "sa2c": 150_000}


@pytest.mark.parametrize(("algo", "engine", "precision"), [
    ("ppo", "auto", "fp32"), ("sppo", "auto", "fp32"), ("a2c", "auto", "fp32"), ("sa2c", "auto", "fp32"),
    ("sppo", "torch", "fp32"),
    pytest.param("sppo", "auto", "bf16", marks=pytest.mark.slow),  # 30 s; the torch path's learning stays in fp32 above
])
def test_cartpole_reaches_475(algo, engine, precision):
    """The preset algorithm reaches an evaluation return >= 475 on CartPole-v1 within its budget (with the
    NumPy engine, the default for MLPs, and through the torch path that CNNs and GPUs use, once in float32 and
    once with bfloat16 bodies, which runs on the torch path)."""
    result = symrl.train(algo=algo, env="CartPole-v1", total_steps=CARTPOLE_BUDGET[algo], seed=0,
                         stop_return=475.0, progress=False, tensorboard=False, engine=engine, precision=precision)
    best = max(e["mean_return"] for e in result.evaluations)
    assert best >= 475.0, result.evaluations
    assert result.steps <= CARTPOLE_BUDGET[algo]


def test_discretised_sppo_learns_inverted_pendulum():
    """DSPPO (11 bins per action dimension, alpha 0.5, beta 20) balances InvertedPendulum-v4 (max 1000)."""
    cfg = symrl.make_config("sppo", "InvertedPendulum-v4", total_steps=60_000, n_envs=2, n_steps=512,
                            eval_freq=4096, stop_return=950.0, progress=False, tensorboard=False)
    assert cfg.bins == 11 and cfg.beta == 20.0
    result = symrl.train(cfg)
    assert max(e["mean_return"] for e in result.evaluations) >= 950.0, result.evaluations


@pytest.mark.slow
def test_discretised_sppo_learns_pendulum():
    """DSPPO on Pendulum-v1 beats -300 (random play scores about -1200)."""
    result = symrl.train(algo="sppo", env="Pendulum-v1", total_steps=200_000, eval_freq=8192,
                         stop_return=-300.0, progress=False, tensorboard=False)
    assert max(e["mean_return"] for e in result.evaluations) >= -300.0, result.evaluations
