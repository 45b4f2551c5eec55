"""A2C and symmetric A2C: one gradient step on the whole rollout (no advantage normalisation by default)."""

from __future__ import annotations

import torch

from ..losses import symmetric_a2c_loss
from ..policies import ActorCritic
from .common import Batch, mean_action_prob, optimizer_step, standardized, value_loss
from .update import UpdateSettings


def a2c_update(policy: ActorCritic, optimizer: torch.optim.Optimizer, batch: Batch, settings: UpdateSettings) -> dict:
    """One step on the whole rollout; ``settings`` may be the run's :class:`symrl.Config`."""
    s = UpdateSettings.of(settings)
    log_prob, entropy, values = policy.evaluate(batch.obs, batch.actions)
    advantages, sign_changed = standardized(batch.advantages, s.normalizes(len(batch), ppo=False))

    pg = symmetric_a2c_loss(log_prob, advantages, **s.loss_kwargs())
    v_loss = value_loss(values, batch.old_values, batch.returns, None)
    entropy_mean = entropy.mean()
    loss = s.total(pg.loss, v_loss, entropy_mean)
    grad_norm = optimizer_step(policy, optimizer, loss, s.max_grad_norm)

    return {
        "loss": loss.item(),
        "policy_loss": pg.loss.item(),
        "rl_loss": pg.rl_loss.item(),
        "reverse_loss": pg.reverse_loss.item(),
        "value_loss": v_loss.item(),
        "entropy": entropy_mean.item(),
        "sign_change_ratio": sign_changed,
        "grad_norm": float(grad_norm),
        "action_prob": mean_action_prob(log_prob),
    }
