"""The Python API as Stable-Baselines3 users call it: mistakes are one SymrlError naming the fix, a config keeps
its algorithm's preset, and an agent acts and evaluates reproducibly."""

from __future__ import annotations

import numpy as np
import pytest

import symrl
from symrl import SymrlError

TINY = dict(total_steps=256, n_steps=64, n_envs=2, eval_episodes=0, progress=False)


@pytest.fixture(scope="module")
def agent():
    return symrl.train(algo="ppo", env="CartPole-v1", **TINY).agent


def test_a_config_is_made_by_make_config_and_keeps_its_algorithm(tmp_path):
    with pytest.raises(SymrlError, match="expected a symrl.Config .*got str"):
        symrl.train("sppo", env="CartPole-v1")
    with pytest.raises(SymrlError, match="expected a symrl.Config .*got dict"):
        symrl.Trainer({"algo": "sppo"})
    ppo = symrl.make_config("ppo", "CartPole-v1", **TINY)
    with pytest.raises(SymrlError, match="algo selects the preset's settings .*make_config"):
        symrl.train(ppo, algo="sppo")  # would be PPO labelled sppo (alpha 1, beta 0)
    with pytest.raises(SymrlError, match="env selects"):
        ppo.replace(env="LunarLander-v3")
    with pytest.raises(SymrlError, match="total_steps must be positive"):
        ppo.replace(total_steps=0)  # replace validates
    with pytest.raises(SymrlError, match="total_steps must be given as int \\(e.g. 1000\\), not the string '1000'"):
        symrl.Config(total_steps="1000").validate()
    with pytest.raises(SymrlError, match="gamma must be a number"):
        symrl.Config(gamma=[0.9]).validate()
    assert symrl.make_config("sppo", "CartPole-v1").beta > 0  # make_config applies sppo's weights
    with pytest.raises(SymrlError, match="env must be a Gymnasium environment id"):
        symrl.make_config("ppo", None)
    with pytest.raises(SymrlError, match="total_steps cannot be null; give an integer"):
        symrl.make_config("ppo", "CartPole-v1", total_steps=None)
    with pytest.raises(SymrlError, match="out must be a directory path"):
        symrl.train(ppo, out=123)


def test_discretize_action_checks_its_bins():
    import gymnasium as gym

    from symrl.envs.wrappers import DiscretizeAction

    for bins in (1, 11.0, True):
        with pytest.raises(SymrlError, match="bins must be a whole number >= 2"):
            DiscretizeAction(gym.make("Pendulum-v1"), bins)
    assert DiscretizeAction(gym.make("Pendulum-v1"), 11).action_space.nvec.tolist() == [11]


@pytest.mark.filterwarnings("ignore:Evaluation environment is not wrapped")
def test_act_checks_the_observation_and_predict_is_stable_baselines3s(agent):
    env = agent.make_env()
    obs, _ = env.reset(seed=0)
    assert agent.act(obs) in (0, 1) and agent.act(np.stack([obs, obs])).shape == (2,)
    with pytest.raises(SymrlError, match=r"expected an observation of shape \(4,\) or a batch .* got \(3,\)"):
        agent.act(obs[:3])
    with pytest.raises(SymrlError, match=r"got \(5, 3\)"):
        agent.act(np.zeros((5, 3)))
    with pytest.raises(SymrlError, match="env.reset\\(\\) returns both"):
        agent.act(env.reset(seed=0))
    for bad in (np.array([0.1, np.nan, 0.0, 0.2]), np.array([0.1, np.inf, 0.0, 0.2]), np.array(["a", "b", "c", "d"])):
        with pytest.raises(SymrlError, match="NaN, infinite or non-numeric"):
            agent.act(bad)
    action, state = agent.predict(obs, state=None, episode_start=None, deterministic=True)
    assert action == agent.act(obs, deterministic=True) and state is None
    sb3_evaluation = pytest.importorskip("stable_baselines3.common.evaluation")
    mean, _ = sb3_evaluation.evaluate_policy(agent, env, n_eval_episodes=2)
    assert mean > 0
    env.close()


def test_evaluate_is_reproducible_with_stochastic_actions_and_checks_its_arguments(agent):
    first = agent.evaluate(4, seed=1, deterministic=False)
    assert np.array_equal(first, agent.evaluate(4, seed=1, deterministic=False))  # actions are seeded too
    assert not np.array_equal(first, agent.evaluate(4, seed=2, deterministic=False))
    for bad in (dict(episodes=0), dict(episodes=1.5), dict(episodes=2, seed=None), dict(episodes=2, seed=-1)):
        with pytest.raises(SymrlError, match="evaluate\\(\\) needs"):
            agent.evaluate(**bad)
