"""Pieces both update steps share: the batch, the value loss, the guarded optimiser step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ..advantages import normalize_advantages, sign_change_ratio
from ..errors import TrainingDiverged


@dataclass
class Batch:
    """A flattened rollout: B = n_steps * n_envs samples."""

    obs: torch.Tensor
    actions: torch.Tensor
    old_log_prob: torch.Tensor
    old_values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor

    def __len__(self) -> int:
        return self.old_values.shape[0]

    def __getitem__(self, index: torch.Tensor) -> "Batch":
        return Batch(*(getattr(self, f)[index] for f in self.__dataclass_fields__))


def standardized(advantages: torch.Tensor, normalize: bool) -> tuple[torch.Tensor, float]:
    """The advantages a step uses and the share whose sign standardising changed (NaN when not standardised)."""
    if not normalize:
        return advantages, float("nan")
    normalized = normalize_advantages(advantages)
    return normalized, sign_change_ratio(advantages, normalized).item()


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, clip: Optional[float]) -> torch.Tensor:
    """MSE to the returns; with ``clip``, PPO's clipped value loss (the pessimistic of both)."""
    if clip is None:
        return (returns - values).pow(2).mean()
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    return torch.max((returns - values).pow(2), (returns - clipped).pow(2)).mean()


def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, max_grad_norm: float) -> torch.Tensor:
    """Backward, global grad-norm clipping, step. A non-finite loss stops training before any update."""
    if not torch.isfinite(loss):
        raise TrainingDiverged(
            f"the loss became {loss.item()} (non-finite); training stopped and the last checkpoint (if one was written) is kept. "
            "Lower learning_rate or check the reward scale"
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    return grad_norm


def mean_action_prob(log_prob: torch.Tensor) -> float:
    """Mean probability of the taken actions (joint over a trailing action axis) under the policy being updated, a
    logging statistic: SA2C's per-sample weight is alpha + beta * |z| times it (SPEC 1.1)."""
    joint = log_prob.detach().sum(-1) if log_prob.dim() > 1 else log_prob.detach()
    return float(joint.exp().mean())


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    """1 - Var[returns - values] / Var[returns]; NaN when the returns are constant (computed in NumPy:
    a logging statistic, once per update)."""
    v, r = values.detach().cpu().numpy(), returns.detach().cpu().numpy()
    var = float(r.var())
    return float("nan") if var == 0 else 1.0 - float((r - v).var()) / var
