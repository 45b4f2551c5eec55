"""SPEC 1.1 end to end: SPPO(alpha, beta) trains exactly like PPO with policy coefficient alpha + beta|Z|."""

from __future__ import annotations

import torch

import symrl


def _params(algo: str, **overrides) -> list[torch.Tensor]:
    result = symrl.train(algo=algo, env="CartPole-v1", total_steps=512, n_envs=2, n_steps=128, batch_size=64,
                         n_epochs=2, eval_freq=10_000, eval_episodes=1, seed=3, progress=False, tensorboard=False,
                         **overrides)
    return [p.detach().clone() for p in result.agent.policy.parameters()]


def test_sppo_equals_scaled_ppo_and_differs_from_ppo():
    """Two PPO updates: sppo (0.5, 1, Z=-1) == ppo with policy_coef 1.5, and != plain ppo."""
    sppo = _params("sppo", alpha=0.5, beta=1.0, z=-1.0)
    scaled = _params("ppo", policy_coef=1.5)
    plain = _params("ppo")
    for a, b in zip(sppo, scaled, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert any(not torch.allclose(a, b, atol=1e-4) for a, b in zip(sppo, plain, strict=True))

