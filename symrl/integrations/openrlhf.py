"""Symmetric PPO as an OpenRLHF-compatible policy-loss module (written against OpenRLHF 0.11's ``PolicyLoss``).

OpenRLHF's actor computes its policy loss with a ``PolicyLoss`` module built from ``clip_eps_low``,
``clip_eps_high`` and ``token_level_loss`` and called as ``loss_fn(log_probs, old_log_probs, advantages,
action_mask=..., rollout_log_probs=..., dp_size=..., batch_num_tokens=..., global_batch_size=...)``; it unpacks
``(loss, clip_ratio, ppo_kl, vllm_kl, is_filter_ratio)``. :class:`SymmetricPolicyLoss` takes and returns the
same, so it can replace it::

    from symrl.integrations.openrlhf import SymmetricPolicyLoss
    actor.actor_loss_fn = SymmetricPolicyLoss(clip_eps_low=0.2, alpha=0.5, beta=0.4, z=-1.0)

The per-token loss is :func:`symrl.losses.symmetric_ppo_loss`'s; it is aggregated as OpenRLHF aggregates
its own (per token over the global batch, or per sequence). Not supported: an asymmetric clip range, dual
clip, GSPO and the rollout importance-sampling correction (``rollout_log_probs`` is accepted and ignored, as
OpenRLHF does with its correction off). With alpha 1 and beta 0 the loss and its metrics equal OpenRLHF
0.11.2's ``PolicyLoss`` in all four aggregations (checked once against its source; OpenRLHF is not a test
dependency). Diagnostics of the last call (clip fraction, approximate KL, the two loss terms) are kept in
``last_stats``.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from ..losses import masked_mean, symmetric_ppo_loss

__all__ = ["SymmetricPolicyLoss"]


def aggregate(loss: torch.Tensor, mask: Optional[torch.Tensor], token_level_loss: bool, dp_size: int,
              batch_num_tokens: Optional[float], global_batch_size: Optional[float]) -> torch.Tensor:
    """OpenRLHF's reduction of a per-token loss: per token (masked sum over the global token count), or the mean
    over sequences of each sequence's token mean; ``dp_size`` undoes the data-parallel gradient averaging."""
    mask = torch.ones_like(loss) if mask is None else mask.to(loss.dtype)
    if token_level_loss:
        if batch_num_tokens is None:
            return masked_mean(loss, mask)
        return (loss * mask).sum() / batch_num_tokens * dp_size
    tokens = mask.sum(-1)
    per_sequence = (loss * mask).sum(-1) / (tokens + 1e-8)
    has_tokens = (tokens > 0).to(loss.dtype)
    if global_batch_size is None:
        return masked_mean(per_sequence, has_tokens)
    return (per_sequence * has_tokens).sum() / global_batch_size * dp_size


class SymmetricPolicyLoss(nn.Module):
    """``alpha * L_PPO + beta * L_rPPO`` over the tokens where ``action_mask`` is 1."""

    def __init__(self, clip_eps_low: float = 0.2, clip_eps_high: Optional[float] = None, token_level_loss: bool = True,
                 alpha: float = 0.5, beta: float = 1.0, z: float = -1.0, reverse_mask: str = "ppo") -> None:
        super().__init__()
        if z >= 0:
            raise ValueError(f"z must be negative (log 0 of the reverse cross entropy), got {z}")
        if clip_eps_high is not None and clip_eps_high != clip_eps_low:
            raise ValueError("symmetric PPO clips the ratio to [1 - eps, 1 + eps]; pass one clip_eps_low")
        self.clip_eps, self.token_level_loss = clip_eps_low, token_level_loss
        self.alpha, self.beta, self.z, self.reverse_mask = alpha, beta, z, reverse_mask
        self.last_stats: dict[str, float] = {}

    def forward(self, log_probs: torch.Tensor, old_log_probs: torch.Tensor, advantages: torch.Tensor,
                action_mask: Optional[torch.Tensor] = None, rollout_log_probs: Optional[torch.Tensor] = None,
                dp_size: int = 1, batch_num_tokens: Optional[float] = None, global_batch_size: Optional[float] = None,
                **_: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, None, None]:
        out = symmetric_ppo_loss(log_probs, old_log_probs, advantages, clip_range=self.clip_eps, alpha=self.alpha,
                                 beta=self.beta, z=self.z, reverse_mask=self.reverse_mask, mask=action_mask)
        loss = aggregate(out.per_sample, action_mask, self.token_level_loss, dp_size, batch_num_tokens,
                         global_batch_size)
        self.last_stats = {"clip_fraction": float(out.clip_fraction), "approx_kl": float(out.approx_kl),
                           "rl_loss": float(out.rl_loss.detach()), "reverse_loss": float(out.reverse_loss.detach())}
        ppo_kl = masked_mean((old_log_probs - log_probs).detach(), action_mask)
        # vllm_kl and is_filter_ratio are None, as OpenRLHF returns them with its correction off
        return loss, out.clipped_fraction, ppo_kl, None, None
