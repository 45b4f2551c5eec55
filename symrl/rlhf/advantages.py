"""GAE over response tokens: the control-task GAE of :mod:`symrl.advantages` on ``[B, T]`` token matrices.

Rows may be padded on both sides (left-padded prompts, right-padded responses): ``mask`` marks the
response tokens the policy produced, contiguous in each row. A response ends (terminates) at its last
valid token; padding gets zero advantage and never leaks into the recursion.
"""

from __future__ import annotations

import torch

from ..advantages import compute_gae


def token_gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(advantages, returns)`` of shape ``[B, T]``; zero where ``mask`` is 0."""
    mask = mask.to(values.dtype)
    values = values.detach() * mask
    rewards = rewards * mask
    next_mask = torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], dim=1)
    next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], dim=1) * next_mask
    # a step "ends" at the last valid token of a response and everywhere in the padding
    dones = 1.0 - mask * next_mask
    advantages, _ = compute_gae(rewards.T, values.T, next_values.T, dones.T, gamma, lam)
    advantages = advantages.T * mask
    return advantages, (advantages + values) * mask
