"""The per-token symmetric PPO loss matrix shared by the veRL and OpenRLHF plug-ins.

Both frameworks compute a ``[B, T]`` matrix of per-token losses and reduce it with their own aggregation, and both
apply a dual clip (Ye et al. 2020, https://arxiv.org/abs/1912.09729): where the advantage is negative and the ratio
exceeds ``c``, the PPO term is the constant ``-c * A`` and has no gradient (veRL always, with ``clip_ratio_c``
default 3; OpenRLHF with ``dual_clip`` set). The symmetric term follows the authors' mask there: it is active exactly
where the clipped PPO objective has a gradient (SPEC §1), so under a dual clip it is off where the dual clip is on,
and symmetric PPO stays PPO with its policy term scaled by ``alpha + beta * |z|`` (SPEC §1.1). With
``reverse_mask="none"`` the reverse term is kept everywhere.

Both terms come from :func:`symrl.losses.symmetric_ppo_loss`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

import torch

from ..losses import masked_mean, symmetric_ppo_loss


@dataclass
class TokenLoss:
    loss_mat: torch.Tensor
    """``alpha * ppo + beta * reverse`` per token, 0 where masked."""
    clipped_fraction: torch.Tensor
    """Share of tokens whose clipped surrogate is the smaller one (veRL's pg_clipfrac, OpenRLHF's clip_ratio)."""
    dual_fraction: torch.Tensor
    """Share of tokens under the dual clip (veRL's pg_clipfrac_lower); 0 without one."""
    rl_loss: torch.Tensor
    reverse_loss: torch.Tensor
    """Token means of the two terms (the reverse one after its mask), for logging."""
    approx_kl: torch.Tensor


def token_symmetric_ppo(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor,
                        mask: torch.Tensor, *, clip: float, alpha: float, beta: float, z: float,
                        reverse_mask: str = "ppo", dual_clip: Optional[float] = None) -> TokenLoss:
    mask = mask.to(log_prob.dtype)
    ppo = symmetric_ppo_loss(log_prob, old_log_prob, advantages, clip_range=clip, alpha=1.0, beta=0.0, z=z,
                             reverse_mask=reverse_mask, mask=mask)
    rev = symmetric_ppo_loss(log_prob, old_log_prob, advantages, clip_range=clip, alpha=0.0, beta=1.0, z=z,
                             reverse_mask=reverse_mask, mask=mask)
    ppo_terms, rev_terms = ppo.per_sample, rev.per_sample
    adv = advantages.detach()
    if dual_clip is None:
        dual = torch.zeros_like(mask, dtype=torch.bool)
    else:
        if not dual_clip > 1.0:
            raise ValueError(f"the dual clip's bound must be > 1, got {dual_clip}")
        with torch.no_grad():
            log_ratio = torch.where(mask.bool(), log_prob - old_log_prob, torch.zeros_like(log_prob))
            dual = mask.bool() & (adv < 0) & (log_ratio.exp() > dual_clip)
        ppo_terms = torch.where(dual, -dual_clip * adv, ppo_terms)
        if reverse_mask == "ppo":
            rev_terms = torch.where(dual, torch.zeros_like(rev_terms), rev_terms)
    return TokenLoss(
        loss_mat=alpha * ppo_terms + beta * rev_terms,
        clipped_fraction=ppo.clipped_fraction,
        dual_fraction=masked_mean(dual.to(log_prob.dtype), mask),
        rl_loss=masked_mean(ppo_terms.detach(), mask),
        reverse_loss=masked_mean(rev_terms.detach(), mask),
        approx_kl=ppo.approx_kl,
    )


def version_tuple(version: str) -> tuple[int, ...]:
    """``"0.9.1"`` -> ``(0, 9, 1)``; a pre-release or local suffix is dropped (``"0.10.0rc1"`` -> ``(0, 10, 0)``)."""
    parts = []
    for piece in version.split("+")[0].split(".")[:3]:
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


def check_version(library: str, version: str, low: tuple[int, ...], high: tuple[int, ...]) -> None:
    """Raise a :class:`symrl.errors.SymrlError` naming the supported range unless ``low <= version < high``."""
    from ..errors import SymrlError  # noqa: PLC0415

    if not low <= version_tuple(version) < high:
        span = f">={'.'.join(map(str, low))},<{'.'.join(map(str, high))}"
        raise SymrlError(f"symrl's {library} plug-in supports {library} {span}, found {library} {version}; "
                         f"install a supported version (pip install '{library.lower()}{span}')")
