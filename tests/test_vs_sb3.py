"""symrl's PPO update is Stable-Baselines3's PPO update.

Same starting weights (SB3's, copied into a symrl ActorCritic), the same rollout (collected by SB3), the
same minibatch order: one PPO update (several epochs) in each library must leave the same parameters.
This pins the algorithm, for the NumPy engine and the torch path alike; benchmarks/RESULTS.md reports
the learning-curve comparison on a MuJoCo task.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from symrl.algos import ppo_update
from symrl.algos.common import Batch
from symrl.config import make_config
from symrl.fast import NumpyEngine
from symrl.policies import ActorCritic
from symrl.trainer import make_optimizer

sb3 = pytest.importorskip("stable_baselines3")

from stable_baselines3.common.env_util import make_vec_env  # noqa: E402

N_STEPS, BATCH, EPOCHS = 256, 64, 3
NAMES = {  # SB3 MlpPolicy (separate pi / vf networks) -> symrl ActorCritic
    "mlp_extractor.policy_net.0": "actor_body.net.0", "mlp_extractor.policy_net.2": "actor_body.net.2",
    "mlp_extractor.value_net.0": "critic_body.net.0", "mlp_extractor.value_net.2": "critic_body.net.2",
    "action_net": "action_head", "value_net": "value_head",
}


def _symrl_name(name: str) -> str:
    for theirs, ours in NAMES.items():
        if name.startswith(theirs + "."):
            return ours + name[len(theirs):]
    return name  # log_std


def _sb3_after_one_update(seed: int = 0):
    model = sb3.PPO("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=1, seed=seed), n_steps=N_STEPS, batch_size=BATCH,
                    n_epochs=EPOCHS, learning_rate=3e-4, seed=seed, device="cpu")
    _, callback = model._setup_learn(N_STEPS, None)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=N_STEPS)
    before = {_symrl_name(k): v.clone() for k, v in model.policy.state_dict().items()}
    buf = model.rollout_buffer
    flat = lambda x: torch.as_tensor(x.reshape(N_STEPS, *x.shape[2:])).float()  # noqa: E731  [T, 1, ...] -> [T, ...]
    batch = Batch(*(flat(x) for x in (buf.observations, buf.actions, buf.log_probs, buf.values, buf.advantages, buf.returns)))
    np.random.seed(123)  # SB3 draws one np.random.permutation per epoch
    model.train()
    after = {_symrl_name(k): v for k, v in model.policy.state_dict().items()}
    np.random.seed(123)
    orders = [torch.from_numpy(np.random.permutation(N_STEPS)) for _ in range(EPOCHS)]
    return before, after, batch, orders, model


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_one_ppo_update_equals_stable_baselines3(engine, monkeypatch):
    before, expected, batch, orders, model = _sb3_after_one_update()
    cfg = make_config("ppo", "Pendulum-v1", preset="mujoco", n_steps=N_STEPS, batch_size=BATCH, n_epochs=EPOCHS,
                      learning_rate=3e-4, engine=engine)
    policy = ActorCritic(model.observation_space, model.action_space, cfg)
    policy.load_state_dict(before)
    optimizer = make_optimizer(cfg, policy)
    draws = iter(orders)
    monkeypatch.setattr(torch, "randperm", lambda n, **kw: next(draws))
    if engine == "numpy":
        NumpyEngine(policy, optimizer, np.random.default_rng(0)).ppo_update(batch, cfg, cfg.clip_range)
    else:
        ppo_update(policy, optimizer, batch, cfg, cfg.clip_range)
    moved = 0.0
    for name, value in policy.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=1e-4, atol=2e-6, msg=name)
        moved = max(moved, (expected[name] - before[name]).abs().max().item())
    assert moved > 1e-4  # the update did change the parameters
