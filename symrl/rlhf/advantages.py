"""Advantages of response tokens: GAE with a critic (PPO; the control-task GAE of :mod:`symrl.advantages` on
``[B, T]`` token matrices) and the critic-free group baselines of GRPO and RLOO.

Rows may be padded on both sides (left-padded prompts, right-padded responses): ``mask`` marks the
response tokens the policy produced, contiguous in each row. A response ends (terminates) at its last
valid token; padding gets zero advantage and never leaks into the recursion.
"""

from __future__ import annotations

import torch

from ..advantages import compute_gae
from .config import REWARD_SCALINGS


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


GROUP_ESTIMATORS = ("grpo", "rloo")


def group_advantages(scores: torch.Tensor, group_size: int, estimator: str = "grpo", scale: str = "group",
                     eps: float = 1e-6) -> torch.Tensor:
    """Critic-free advantages of ``[B]`` sequence scores in consecutive groups of ``group_size`` responses to one
    prompt (``B`` a multiple of it).

    - ``grpo``: the score minus its group's mean (Shao et al. 2024);
    - ``rloo``: the score minus the mean of the *other* responses of its group (leave-one-out; Ahmadian et al.
      2024), which is ``G / (G - 1)`` times the GRPO difference;

    then divided by the standard deviation (unbiased, + ``eps``) of the group (``scale="group"``, GRPO), of the
    whole batch (``"batch"``) or not at all (``"none"``: Dr. GRPO, and RLOO as its authors define it). A group
    whose scores are all equal gets advantage 0.
    """
    if estimator not in GROUP_ESTIMATORS:
        raise ValueError(f"unknown group estimator {estimator!r}; choose one of {', '.join(GROUP_ESTIMATORS)}")
    if scale not in REWARD_SCALINGS:
        raise ValueError(f"unknown reward scaling {scale!r}; choose one of {', '.join(REWARD_SCALINGS)}")
    if group_size < 2 or scores.shape[0] % group_size:
        raise ValueError(f"{scores.shape[0]} scores cannot form groups of {group_size} (need >= 2 dividing the batch)")
    groups = scores.reshape(-1, group_size)
    centred = groups - groups.mean(1, keepdim=True)
    if estimator == "rloo":
        centred = centred * group_size / (group_size - 1)
    if scale == "group":
        centred = centred / (groups.std(1, keepdim=True) + eps)
    elif scale == "batch":
        centred = centred / (scores.std() + eps)
    return centred.reshape(-1)
