"""Advantages: GAE with time-limit bootstrapping, normalisation and the sign-change diagnostic.

Works on ``[T, N]`` arrays (T steps of N environments) and on token matrices ``[B, T]`` after a
transpose; torch tensors throughout so the same code serves control and language models.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from .losses import masked_mean

__all__ = ["compute_gae", "normalize_advantages", "sign_change_ratio"]


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the first (time) axis.

    ``next_values[t]`` is the value of the state reached after step t: ``V(s_{t+1})`` while the episode
    goes on, ``V(final observation)`` when it was truncated by a time limit (bootstrapping), and 0 when
    it terminated. ``dones[t]`` (terminated or truncated) stops the lambda-recursion at episode ends.
    Returns ``(advantages, returns)`` with ``returns = advantages + values`` (the value targets).
    """
    # The recursion is sequential in t, so it runs in NumPy on the CPU (one small operation per step is
    # several times cheaper there than a torch call, and cheaper than T kernel launches on a GPU).
    dtype = torch.float64 if values.dtype == torch.float64 else torch.float32  # NumPy has no bfloat16
    host = lambda x: x.detach().to("cpu", dtype).numpy()  # noqa: E731
    r, v, nv = host(rewards), host(values), host(next_values)
    not_done = 1.0 - host(dones)
    deltas = r + gamma * nv - v
    decay = (gamma * gae_lambda) * not_done
    advantages = np.empty_like(v)
    running = np.zeros_like(v[0])
    for t in range(v.shape[0] - 1, -1, -1):
        running = deltas[t] + decay[t] * running
        advantages[t] = running
    advantages = torch.from_numpy(advantages).to(values.device, values.dtype)
    return advantages, advantages + values.detach()


def normalize_advantages(
    advantages: torch.Tensor, mask: Optional[torch.Tensor] = None, eps: float = 1e-8
) -> torch.Tensor:
    """Standardise advantages (over valid entries only when a 0/1 ``mask`` is given)."""
    mean = masked_mean(advantages, mask)
    centred = advantages - mean
    if mask is None:
        std = advantages.std() if advantages.numel() > 1 else advantages.new_tensor(0.0)
    else:
        n = mask.to(advantages.dtype).sum()
        var = (centred.pow(2) * mask).sum() / (n - 1).clamp_min(1.0)
        std = var.sqrt()
    out = centred / (std + eps)
    return out * mask if mask is not None else out


def sign_change_ratio(
    raw: torch.Tensor, normalized: torch.Tensor, mask: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Share of samples whose advantage sign was changed by normalisation (the paper's diagnostic)."""
    changed = (torch.sign(raw) != torch.sign(normalized)).to(raw.dtype)
    return masked_mean(changed, mask)

