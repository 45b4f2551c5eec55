"""Symmetric PPO as an OpenRLHF-compatible policy-loss module.

OpenRLHF's actor trainer computes its policy loss with a ``PolicyLoss(clip_eps)`` module called as
``loss_fn(log_probs, old_log_probs, advantages, action_mask=...)``. :class:`SymmetricPolicyLoss` has the
same constructor argument and call, so it can replace it::

    from symrl.integrations.openrlhf import SymmetricPolicyLoss
    trainer.actor_loss_fn = SymmetricPolicyLoss(clip_eps=0.2, alpha=0.5, beta=0.4, z=-1.0)

The loss is :func:`symrl.losses.symmetric_ppo_loss` with the action mask (a masked mean over tokens).
Diagnostics of the last call (clip fraction, approximate KL, reverse loss) are kept in ``last_stats``.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from ..losses import symmetric_ppo_loss

__all__ = ["SymmetricPolicyLoss"]


class SymmetricPolicyLoss(nn.Module):
    """``alpha * L_PPO + beta * L_rPPO`` over the tokens where ``action_mask`` is 1."""

    def __init__(self, clip_eps: float = 0.2, alpha: float = 0.5, beta: float = 1.0, z: float = -1.0,
                 reverse_mask: str = "ppo") -> None:
        super().__init__()
        if z >= 0:
            raise ValueError(f"z must be negative (log 0 of the reverse cross entropy), got {z}")
        self.clip_eps, self.alpha, self.beta, self.z, self.reverse_mask = clip_eps, alpha, beta, z, reverse_mask
        self.last_stats: dict[str, float] = {}

    def forward(self, log_probs: torch.Tensor, old_log_probs: torch.Tensor, advantages: torch.Tensor,
                action_mask: Optional[torch.Tensor] = None, **_: Any) -> torch.Tensor:
        out = symmetric_ppo_loss(log_probs, old_log_probs, advantages, clip_range=self.clip_eps, alpha=self.alpha,
                                 beta=self.beta, z=self.z, reverse_mask=self.reverse_mask, mask=action_mask)
        self.last_stats = {"clip_fraction": float(out.clip_fraction), "approx_kl": float(out.approx_kl),
                           "rl_loss": float(out.rl_loss.detach()), "reverse_loss": float(out.reverse_loss.detach())}
        return out.loss
