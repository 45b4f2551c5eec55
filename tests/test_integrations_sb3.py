"""symrl.integrations.sb3: SA2C and SPPO inside Stable-Baselines3.

The central check replays one SB3 update with the authors' loss written out here from the formulas of
SPEC 1 (not through symrl.losses): starting from the same weights, on the same rollout and minibatch
order, the parameters must agree to 1e-6.
"""

from __future__ import annotations

import copy
import csv

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from torch.nn import functional as F

sb3 = pytest.importorskip("stable_baselines3")

from stable_baselines3.common.callbacks import BaseCallback, EvalCallback, StopTrainingOnRewardThreshold  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402
from stable_baselines3.common.logger import configure  # noqa: E402
from stable_baselines3.common.vec_env import VecNormalize  # noqa: E402

from symrl.integrations.sb3 import SA2C, SPPO, DiscretizeAction  # noqa: E402

ALPHA, BETA, Z = 0.5, 2.0, -1.0


def _discrete_env(seed: int = 0):
    return make_vec_env("CartPole-v1", n_envs=2, seed=seed)


def _multidiscrete_env(seed: int = 0):
    """Pendulum with its torque discretised into 5 bins, twice: MultiDiscrete([5, 5]) via a 2-D Box."""

    def make():
        env = gym.make("Pendulum-v1")
        env = gym.wrappers.TransformAction(
            env, lambda a: a[:1], gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
        )
        return DiscretizeAction(env, bins=5)

    return make_vec_env(make, n_envs=2, seed=seed)


def _record_update(model) -> dict:
    """Wrap model.train so the state before the first update (weights, optimizer, numpy RNG) is kept."""
    before: dict = {}
    real_train = model.train

    def train():
        if not before:
            before["policy"] = copy.deepcopy(model.policy)
            before["np_state"] = np.random.get_state()
            before["progress"] = model._current_progress_remaining
        real_train()

    model.train = train
    return before


def _evaluate(policy, space, data):
    actions = data.actions.long().flatten() if isinstance(space, gym.spaces.Discrete) else data.actions
    values, log_prob, entropy = policy.evaluate_actions(data.observations, actions)
    return values.flatten(), log_prob, entropy


def _step(policy, loss, max_grad_norm):
    policy.optimizer.zero_grad()
    loss.backward()
    th.nn.utils.clip_grad_norm_(policy.parameters(), max_grad_norm)
    policy.optimizer.step()


def _authors_ppo_update(model, before, beta: float = BETA) -> th.nn.Module:
    """PPO epochs over the same minibatches with L = alpha L_PPO + beta L_rPPO + c_v L_V - c_e H (SPEC 1)."""
    policy = copy.deepcopy(before["policy"])
    eps = model.clip_range(before["progress"])
    np.random.set_state(before["np_state"])  # the buffer's minibatch permutation
    for _ in range(model.n_epochs):
        for data in model.rollout_buffer.get(model.batch_size):
            values, log_p, entropy = _evaluate(policy, model.action_space, data)
            adv = data.advantages
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            r = th.exp(log_p - data.old_log_prob)
            l_ppo = -th.mean(th.min(r * adv, th.clamp(r, 1 - eps, 1 + eps) * adv))
            m = ((r >= 1 - eps) & (r <= 1 + eps)) | (r * adv <= th.clamp(r, 1 - eps, 1 + eps) * adv)
            l_rppo = -Z * th.mean(m * adv * (1 - th.exp(log_p)) / th.exp(data.old_log_prob))
            loss = ALPHA * l_ppo + beta * l_rppo + model.vf_coef * F.mse_loss(data.returns, values) \
                - model.ent_coef * th.mean(entropy)
            _step(policy, loss, model.max_grad_norm)
    return policy


def _authors_a2c_update(model, before, beta: float = BETA) -> th.nn.Module:
    """One step over the whole rollout with L = alpha L_A2C + beta L_rA2C + c_v L_V - c_e H (SPEC 1)."""
    policy = copy.deepcopy(before["policy"])
    for data in model.rollout_buffer.get(batch_size=None):
        values, log_p, entropy = _evaluate(policy, model.action_space, data)
        adv = data.advantages
        l_a2c = -th.mean(adv * log_p)
        l_ra2c = -Z * th.mean(adv * (1 - th.exp(log_p)))
        loss = ALPHA * l_a2c + beta * l_ra2c + model.vf_coef * F.mse_loss(data.returns, values) \
            - model.ent_coef * th.mean(entropy)
        _step(policy, loss, model.max_grad_norm)
    return policy


def _max_difference(a: th.nn.Module, b: th.nn.Module) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a.parameters(), b.parameters(), strict=True))


def _assert_same_parameters(a: th.nn.Module, b: th.nn.Module) -> None:
    assert _max_difference(a, b) <= 1e-6, f"parameters differ by {_max_difference(a, b):.2e}"


@pytest.mark.parametrize("make_env", [_discrete_env, _multidiscrete_env], ids=["discrete", "multidiscrete"])
def test_sppo_update_equals_authors_formula(make_env):
    model = SPPO("MlpPolicy", make_env(), alpha=ALPHA, beta=BETA, z=Z, n_steps=64, batch_size=32, n_epochs=3,
                 ent_coef=0.01, seed=0)
    before = _record_update(model)
    model.learn(total_timesteps=128)  # one rollout of 2 x 64 steps, one update
    _assert_same_parameters(model.policy, _authors_ppo_update(model, before))
    # the comparison is sharp: without the reverse term the same replay ends elsewhere
    assert _max_difference(model.policy, _authors_ppo_update(model, before, beta=0.0)) > 1e-4


@pytest.mark.parametrize("make_env", [_discrete_env, _multidiscrete_env], ids=["discrete", "multidiscrete"])
def test_sa2c_update_equals_authors_formula(make_env):
    model = SA2C("MlpPolicy", make_env(), alpha=ALPHA, beta=BETA, z=Z, n_steps=16, ent_coef=0.01, seed=0)
    before = _record_update(model)
    model.learn(total_timesteps=32)
    _assert_same_parameters(model.policy, _authors_a2c_update(model, before))
    assert _max_difference(model.policy, _authors_a2c_update(model, before, beta=0.0)) > 1e-4


@pytest.mark.parametrize(("ours", "theirs", "kwargs"), [
    (SPPO, sb3.PPO, {"n_steps": 64, "batch_size": 32, "n_epochs": 2}),
    (SPPO, sb3.PPO, {"n_steps": 64, "batch_size": 32, "n_epochs": 4, "clip_range_vf": 0.1, "target_kl": 0.002,
                     "normalize_advantage": False}),
    (SA2C, sb3.A2C, {"n_steps": 8}),
    (SA2C, sb3.A2C, {"n_steps": 8, "normalize_advantage": True, "use_rms_prop": False}),
], ids=["ppo", "ppo-vf-clip-target-kl", "a2c", "a2c-normalized-adam"])
def test_beta_zero_alpha_one_is_stable_baselines3(ours, theirs, kwargs):
    """With the reverse term off, the classes are SB3's algorithms: same seed, same final weights."""
    a = ours("MlpPolicy", _discrete_env(), alpha=1.0, beta=0.0, seed=3, **kwargs).learn(512)
    b = theirs("MlpPolicy", _discrete_env(), seed=3, **kwargs).learn(512)
    _assert_same_parameters(a.policy, b.policy)


def test_box_action_space_error_names_the_wrapper():
    with pytest.raises(ValueError, match="DiscretizeAction"):
        SPPO("MlpPolicy", "Pendulum-v1")
    with pytest.raises(ValueError, match="DiscretizeAction"):
        SA2C("MlpPolicy", "Pendulum-v1")
    with pytest.raises(ValueError, match="negative"):
        SPPO("MlpPolicy", "CartPole-v1", z=1.0)


def test_save_load_round_trip_keeps_settings_and_actions(tmp_path):
    model = SPPO("MlpPolicy", _multidiscrete_env(), alpha=0.25, beta=3.0, z=-2.0, n_steps=32, batch_size=32, seed=0)
    model.learn(64)
    model.save(tmp_path / "sppo.zip")
    loaded = SPPO.load(tmp_path / "sppo.zip", env=_multidiscrete_env())
    assert (loaded.alpha, loaded.beta, loaded.z, loaded.reverse_mask) == (0.25, 3.0, -2.0, "ppo")
    obs = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    loaded.learn(64)  # and it trains on


class _CountSteps(BaseCallback):
    def _on_step(self) -> bool:
        return True


def test_vecnormalize_callbacks_and_logged_keys(tmp_path):
    env = VecNormalize(_multidiscrete_env())
    model = SPPO("MlpPolicy", env, n_steps=32, batch_size=32, n_epochs=1, seed=0)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    counter = _CountSteps()
    model.learn(3 * 64, callback=counter)
    assert counter.n_calls == 3 * 32
    rows = list(csv.DictReader(open(tmp_path / "progress.csv")))
    for key in ("train/reverse_loss", "train/sign_change_ratio", "train/active_fraction", "train/policy_gradient_loss"):
        assert rows[-1][key] != "", key
    assert 0.0 <= float(rows[-1]["train/sign_change_ratio"]) <= 1.0


@pytest.mark.parametrize(("algo", "kwargs", "budget"), [
    (SPPO, {}, 60_000),
    (SA2C, {"n_steps": 5}, 200_000),
], ids=["sppo", "sa2c"])
@pytest.mark.slow  # a learning run; the update equals the authors' formula in the default suite
def test_learns_cartpole(algo, kwargs, budget):
    """An evaluation return of at least 475 within the budget (deterministic policy, 10 episodes)."""
    env = make_vec_env("CartPole-v1", n_envs=8 if algo is SA2C else 1, seed=0)
    stop = StopTrainingOnRewardThreshold(reward_threshold=475, verbose=0)
    evaluation = EvalCallback(make_vec_env("CartPole-v1", n_envs=1, seed=100), callback_on_new_best=stop,
                              eval_freq=10_000 // env.num_envs, n_eval_episodes=10, verbose=0)
    algo("MlpPolicy", env, seed=0, **kwargs).learn(budget, callback=evaluation)
    assert evaluation.best_mean_reward >= 475, evaluation.best_mean_reward


def test_documented_example_runs_and_sppo_equals_scaled_ppo():
    """examples/sb3_sppo.py (docs/integrations/sb3.md): SPPO and its scaled-PPO control evaluate the same (SPEC 1.1)."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "examples" / "sb3_sppo.py"
    result = subprocess.run([sys.executable, str(script), "--steps", "2048"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    scores = {line.split(" on ")[0].strip(): line.split(": ")[1] for line in result.stdout.splitlines() if "CartPole" in line}
    assert scores["SPPO"] == scores["scaled PPO"], scores
    assert "MultiDiscrete([11])" in result.stdout
