"""Symmetric RL losses (Byun & Perrault, ICML 2025) as pure functions of plain tensors.

Everything in symrl that trains a policy - the Gymnasium engine, the language-model trainer and the
plug-ins for other libraries - calls these two functions, so a loss variant added here is available
everywhere.

Only the log-probability of the taken action is needed: the reverse cross entropy of a one-hot label is
``-Z * (1 - p)`` and ``1 - p = 1 - exp(log p)``, so no second forward pass and no vocabulary-sized
tensor is ever built.

Shapes
------
``log_prob`` is the joint log-probability of the taken action, shape ``[N]``, or ``[B, T]`` together
with a 0/1 ``mask`` of the same shape (token-level use; every mean is then a masked mean).
A trailing action-dimension axis (``log_prob.ndim == advantages.ndim + 1``, e.g. ``[N, D]`` for a
factorised policy over discretised actions) holds per-dimension log-probabilities: the joint one is their
sum, and ``per_dim_reverse=True`` computes the reverse term per dimension instead of jointly.

Advantages and old log-probabilities are treated as constants (detached).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

import torch

Variant = Literal["rce", "mae"]
ReverseMask = Literal["ppo", "none"]

__all__ = [
    "PolicyLoss",
    "symmetric_a2c_loss",
    "symmetric_ppo_loss",
    "masked_mean",
    "aggregate_tokens",
    "LOSS_AGG_MODES",
]


@dataclass
class PolicyLoss:
    """Result of a policy-loss call. ``loss = alpha * rl_loss + beta * reverse_loss``."""

    loss: torch.Tensor
    rl_loss: torch.Tensor
    reverse_loss: torch.Tensor
    clip_fraction: Optional[torch.Tensor] = None
    """PPO only: share of samples whose ratio lies outside [1 - eps, 1 + eps]."""
    approx_kl: Optional[torch.Tensor] = None
    """PPO only: mean of (r - 1) - log r, an unbiased low-variance KL(old || new) estimate."""
    active_fraction: Optional[torch.Tensor] = None
    """PPO only: share of samples where the clipped objective has a gradient (the reverse mask m_t)."""
    clipped_fraction: Optional[torch.Tensor] = None
    """PPO only: share of samples whose clipped surrogate is the smaller one, which the minimum takes (what veRL
    and OpenRLHF report as their clip fraction)."""
    per_sample: Optional[torch.Tensor] = None
    """PPO only: the loss of each sample (token) before the masked mean, ``alpha * rl + beta * reverse``, 0 where
    masked: for frameworks that aggregate it themselves (veRL's agg_loss, OpenRLHF's aggregate_loss)."""


def masked_mean(x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Mean of ``x``; with a 0/1 ``mask`` of the same shape, the mean over entries where mask is 1."""
    if mask is None:
        return x.mean()
    valid = mask.bool()
    return torch.where(valid, x, torch.zeros_like(x)).sum() / valid.sum().clamp_min(1).to(x.dtype)


LOSS_AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")


def aggregate_tokens(values: torch.Tensor, mask: torch.Tensor, mode: str = "token-mean",
                     norm: Optional[float] = None) -> torch.Tensor:
    """Reduce a ``[B, T]`` matrix of per-token losses to a scalar, by veRL's names for the modes:

    - ``token-mean``: the mean over every valid token of the batch (long responses weigh more);
    - ``seq-mean-token-mean``: each sequence's token mean, averaged over sequences (the original GRPO);
    - ``seq-mean-token-sum``: each sequence's token sum, averaged over sequences;
    - ``seq-mean-token-sum-norm``: the token sum divided by ``B * norm`` (``norm`` default ``T``: Dr. GRPO's
      constant normaliser, e.g. the maximum response length).
    """
    valid = mask.bool()
    values = torch.where(valid, values, torch.zeros_like(values))
    if mode == "token-mean":
        return values.sum() / valid.sum().clamp_min(1).to(values.dtype)
    if mode == "seq-mean-token-mean":
        return (values.sum(-1) / valid.sum(-1).clamp_min(1).to(values.dtype)).mean()
    if mode == "seq-mean-token-sum":
        return values.sum(-1).mean()
    if mode == "seq-mean-token-sum-norm":
        return values.sum() / (values.shape[0] * (values.shape[-1] if norm is None else norm))
    raise ValueError(f"unknown loss aggregation mode {mode!r}; choose one of {', '.join(LOSS_AGG_MODES)}")


def _split(log_prob: torch.Tensor, advantages: torch.Tensor, mask: Optional[torch.Tensor] = None):
    """Return (joint log-prob, per-dimension log-probs or None).

    Padded entries (mask 0) are replaced by log p = 0 before anything is exponentiated, so extreme padding
    values (-inf, -1e4) cannot turn the masked mean or its gradient into NaN.
    """
    if mask is not None:
        valid = mask.bool() if log_prob.dim() == mask.dim() else mask.bool().unsqueeze(-1)
        log_prob = torch.where(valid, log_prob, torch.zeros_like(log_prob))
    if log_prob.dim() == advantages.dim() + 1 and log_prob.shape[:-1] == advantages.shape:
        return log_prob.sum(-1), log_prob
    if log_prob.shape != advantages.shape:
        raise ValueError(
            f"log_prob shape {tuple(log_prob.shape)} must equal advantages shape {tuple(advantages.shape)} "
            "or add one trailing action-dimension axis"
        )
    return log_prob, None


LOG_PROB_TOLERANCE = 1e-4  # a log-probability above this is a log density, not the log of a probability


def check_settings(alpha: float = 1.0, beta: float = 0.0, z: float = -1.0, variant: str = "rce",
                   reverse_mask: str = "ppo", prefix: str = "") -> None:
    """Refuse symmetric-loss settings that cannot work, with a ``ValueError`` naming the setting (``prefix`` + its
    name, e.g. ``symmetric_z`` in TRL's and veRL's configs): alpha and beta finite and >= 0, z negative and finite,
    a known variant and reverse mask. The one check that every plug-in and the losses themselves run."""
    if not (math.isfinite(alpha) and math.isfinite(beta) and alpha >= 0 and beta >= 0):
        raise ValueError(f"{prefix}alpha and {prefix}beta must be finite and >= 0 (they weigh the two losses), got "
                         f"{prefix}alpha={alpha}, {prefix}beta={beta}")
    if not (z < 0 and math.isfinite(z)):
        raise ValueError(f"{prefix}z (the reverse cross entropy's log 0) must be negative and finite, got {z}; the "
                         "paper uses -1")
    if variant not in ("rce", "mae"):
        raise ValueError(f"{prefix}variant must be 'rce' or 'mae', got {variant!r}")
    if reverse_mask not in ("ppo", "none"):
        raise ValueError(f"{prefix}reverse_mask must be 'ppo' (the authors' mask) or 'none', got {reverse_mask!r}")


def _check(variant: str, mask: Optional[torch.Tensor], advantages: torch.Tensor, z: float, alpha: float, beta: float,
           reverse_mask: str = "ppo", **tensors: Optional[torch.Tensor]) -> None:
    """The inputs the losses accept, each refused with a ``TypeError``/``ValueError`` that names it: tensors (no
    NumPy arrays or lists) of a floating dtype, finite weights, a non-empty batch, finite advantages where the mask
    is 1 (and :func:`_check_probabilities`)."""
    check_settings(alpha, beta, z, variant, reverse_mask)
    for name, tensor in {**tensors, "advantages": advantages, "mask": mask}.items():
        if tensor is None and name == "mask":
            continue
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}; convert it with "
                            f"torch.as_tensor({name}, dtype=torch.float32)")
        if name != "mask" and not tensor.is_floating_point():
            raise TypeError(f"{name} must have a floating dtype, got {tensor.dtype}; convert it with {name}.float()")
    if mask is not None and mask.shape != advantages.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} must equal advantages shape {tuple(advantages.shape)}")
    if advantages.numel() == 0:
        raise ValueError("the batch is empty (advantages has no elements); pass at least one sample")
    finite = torch.isfinite(advantages.detach())
    if not bool((finite if mask is None else finite | ~mask.bool()).all()):
        raise ValueError("advantages contain NaN or infinite values (where the mask is 1); check the rewards and "
                         "the value estimates that produced them")


def _check_probabilities(log_prob: torch.Tensor, beta: float) -> None:
    """With the reverse term on, ``log_prob`` (padding already zeroed by :func:`_split`) must be the log of
    probabilities: a positive value is a continuous policy's log density, for which the reverse term is meaningless."""
    if beta != 0 and bool((log_prob.detach() > LOG_PROB_TOLERANCE).any()):
        raise ValueError(f"log_prob has positive values (up to {log_prob.detach().max().item():.3g}): the reverse term "
                         "(beta != 0) needs log-probabilities of discrete actions, not a continuous policy's log "
                         "densities; discretise the actions (bins) or set beta=0")


def _reverse_terms(lp: torch.Tensor, z: float, variant: str) -> torch.Tensor:
    """The reverse term per sample (or per dimension), before the advantage weight.

    rce: ``-Z * (1 - p)``; mae: ``1 - 2p``, whose gradient equals rce's with Z = -2.
    """
    p = lp.exp()
    return -z * (1.0 - p) if variant == "rce" else 1.0 - 2.0 * p


# exp(-log p_old) is capped here: e^60 ~ 1e26 keeps sums of millions of terms finite in float32 and bfloat16
INVERSE_OLD_LOG_CAP = 60.0


def _reverse_over_old(lp: torch.Tensor, old_lp: torch.Tensor, z: float, variant: str) -> torch.Tensor:
    """``reverse(p) / p_old`` per sample (or per dimension), computed without overflow.

    rce: ``-Z (1 - p) / p_old = -Z (e^(-log p_old) - r)``; mae: ``e^(-log p_old) - 2 r``, with ``r = e^(log p -
    log p_old)``. The first part is a constant (p_old is detached): it has no gradient, so capping its exponent at
    :data:`INVERSE_OLD_LOG_CAP` keeps the value finite for joint log-probabilities far below float32's -88 (many
    action dimensions, long token sequences) and leaves every gradient as it is; the loss value changes only where
    ``log p_old < -60``, where it was ``e^60`` or more anyway.
    """
    ratio = (lp - old_lp).exp()
    inverse_old = (-old_lp).clamp(max=INVERSE_OLD_LOG_CAP).exp()
    return -z * (inverse_old - ratio) if variant == "rce" else inverse_old - 2.0 * ratio


def symmetric_a2c_loss(
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    *,
    alpha: float = 1.0,
    beta: float = 0.0,
    z: float = -1.0,
    variant: Variant = "rce",
    mask: Optional[torch.Tensor] = None,
    per_dim_reverse: bool = False,
) -> PolicyLoss:
    """Symmetric A2C policy loss: ``alpha * L_A2C + beta * L_rA2C``.

    ``L_A2C = -mean(A * log p)`` and ``L_rA2C = -Z * mean(A * (1 - p))``; its gradient is
    ``|Z| * p * grad L_A2C`` per sample, i.e. a probability-weighted policy gradient.
    """
    _check(variant, mask, advantages, z, alpha, beta, log_prob=log_prob)
    adv = advantages.detach()
    joint_lp, dim_lp = _split(log_prob, adv, mask)
    _check_probabilities(joint_lp if dim_lp is None else dim_lp, beta)
    rl_loss = -masked_mean(adv * joint_lp, mask)
    if per_dim_reverse and dim_lp is not None:
        reverse = _reverse_terms(dim_lp, z, variant).sum(-1)
    else:
        reverse = _reverse_terms(joint_lp, z, variant)
    reverse_loss = masked_mean(adv * reverse, mask)
    return PolicyLoss(loss=alpha * rl_loss + beta * reverse_loss, rl_loss=rl_loss, reverse_loss=reverse_loss)


def symmetric_ppo_loss(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    *,
    clip_range: float = 0.2,
    alpha: float = 1.0,
    beta: float = 0.0,
    z: float = -1.0,
    variant: Variant = "rce",
    reverse_mask: ReverseMask = "ppo",
    mask: Optional[torch.Tensor] = None,
    per_dim_reverse: bool = False,
) -> PolicyLoss:
    """Symmetric PPO policy loss: ``alpha * L_PPO + beta * L_rPPO``.

    ``L_PPO = -mean(min(r A, clip(r, 1-eps, 1+eps) A))`` with ``r = p / p_old`` and
    ``L_rPPO = -Z * mean(m * A * (1 - p) / p_old)``, where ``m`` (``reverse_mask="ppo"``, the authors'
    code) is 1 exactly where the clipped objective has a gradient. There the reverse gradient is
    ``|Z| * grad L_PPO``, so this loss equals PPO with policy coefficient ``alpha + beta * |Z|``.
    ``reverse_mask="none"`` drops ``m`` (the paper's earlier, unmasked form).
    """
    _check(variant, mask, advantages, z, alpha, beta, reverse_mask, log_prob=log_prob, old_log_prob=old_log_prob)
    if not clip_range >= 0:  # 0 at the last update of a linear clip schedule
        raise ValueError(f"clip_range must be >= 0, got {clip_range}")
    if old_log_prob.shape != log_prob.shape:
        raise ValueError(
            f"old_log_prob shape {tuple(old_log_prob.shape)} must equal log_prob shape {tuple(log_prob.shape)}"
        )
    adv = advantages.detach()
    joint_lp, dim_lp = _split(log_prob, adv, mask)
    old_joint, old_dim = _split(old_log_prob.detach(), adv, mask)
    _check_probabilities(joint_lp if dim_lp is None else dim_lp, beta)

    log_ratio = joint_lp - old_joint
    ratio = log_ratio.exp()
    clipped_ratio = ratio.clamp(1.0 - clip_range, 1.0 + clip_range)
    surrogate = ratio * adv
    clipped_surrogate = clipped_ratio * adv
    rl_terms = -torch.min(surrogate, clipped_surrogate)
    rl_loss = masked_mean(rl_terms, mask)

    with torch.no_grad():
        in_range = (ratio >= 1.0 - clip_range) & (ratio <= 1.0 + clip_range)
        active = in_range | (surrogate <= clipped_surrogate)
        clip_fraction = masked_mean((~in_range).to(ratio.dtype), mask)
        approx_kl = masked_mean(ratio - 1.0 - log_ratio, mask)
        active_fraction = masked_mean(active.to(ratio.dtype), mask)
        clipped_fraction = masked_mean((clipped_surrogate < surrogate).to(ratio.dtype), mask)

    # Divided by p_old per sample (jointly, or per dimension for the per-dimension variant).
    if per_dim_reverse and dim_lp is not None:
        reverse = _reverse_over_old(dim_lp, old_dim, z, variant).sum(-1)
    else:
        reverse = _reverse_over_old(joint_lp, old_joint, z, variant)
    weight = adv * active.to(adv.dtype) if reverse_mask == "ppo" else adv
    reverse_terms = weight * reverse
    reverse_loss = masked_mean(reverse_terms, mask)
    per_sample = alpha * rl_terms + beta * reverse_terms
    if mask is not None:
        per_sample = torch.where(mask.bool(), per_sample, torch.zeros_like(per_sample))

    return PolicyLoss(
        loss=alpha * rl_loss + beta * reverse_loss,
        rl_loss=rl_loss,
        reverse_loss=reverse_loss,
        clip_fraction=clip_fraction,
        approx_kl=approx_kl,
        active_fraction=active_fraction,
        clipped_fraction=clipped_fraction,
        per_sample=per_sample,
    )

