"""Symmetric PPO as an OpenRLHF policy-loss module (OpenRLHF >=0.11,<0.12; checked on 0.11.2 against the real
``PolicyLoss`` by ``benchmarks/check_openrlhf.py``, docs/integrations/verl-openrlhf.md).

OpenRLHF's actor (``openrlhf/trainer/ray/ppo_actor.py``) builds its policy loss as ``PolicyLoss(clip_eps_low,
clip_eps_high, dual_clip, token_level_loss, policy_loss_type, is_correction_level, is_correction_mode,
is_correction_gating, is_correction_threshold)``, calls it as ``loss_fn(log_probs, old_log_probs, advantages,
action_mask=..., rollout_log_probs=..., dp_size=..., batch_num_tokens=..., global_batch_size=...)`` and unpacks
``(loss, clip_ratio, ppo_kl, vllm_kl, is_filter_ratio)``. :class:`SymmetricPolicyLoss` has the same constructor
(the symmetric settings are keyword-only after it) and the same call, and accepts keyword arguments a later
OpenRLHF may add to the call, so it can take its place, in the processes that build the actor trainer (OpenRLHF's
Ray workers; OpenRLHF has no loss registry)::

    import functools, openrlhf.trainer.ray.ppo_actor as ppo_actor
    ppo_actor.PolicyLoss = functools.partial(SymmetricPolicyLoss, alpha=0.5, beta=0.4, z=-1.0)

The per-token loss is :func:`symrl.losses.symmetric_ppo_loss`'s, with OpenRLHF's dual clip (under which the
authors' mask turns the reverse term off too, see ``_token_ppo``) and its train/rollout importance-sampling
correction (every level, mode and gating: the per-token coefficient multiplies the whole per-token loss), aggregated
as OpenRLHF aggregates its own (per token over the global batch, or per sequence). With alpha 1 and beta 0 it equals
0.11.2's ``PolicyLoss`` except where a log-ratio exceeds 20 in magnitude (OpenRLHF clamps it there). Not supported:
an asymmetric clip range and ``policy_loss_type="gspo"`` (a sequence-level ratio). Diagnostics of the last call
(clip fraction, approximate KL, the two loss terms) are kept in ``last_stats``.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any, Optional, Sequence

import torch
from torch import nn

from ..losses import check_settings, masked_mean
from ._token_ppo import check_version, token_symmetric_ppo

__all__ = ["SUPPORTED_OPENRLHF", "SymmetricPolicyLoss", "check_openrlhf_version", "aggregate"]

SUPPORTED_OPENRLHF = ((0, 11), (0, 12))
"""OpenRLHF versions the module is written for: >=0.11,<0.12."""


def check_openrlhf_version(version: Optional[str] = None) -> None:
    """Raise :class:`symrl.errors.SymrlError` naming the supported range unless OpenRLHF ``version`` (by default the
    installed one, if any) is supported."""
    if version is None:
        try:
            version = metadata.version("openrlhf")
        except metadata.PackageNotFoundError:
            return  # used on tensors, without OpenRLHF
    check_version("OpenRLHF", version, *SUPPORTED_OPENRLHF)


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


def _row_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sequence mean over the mask, ``[B, 1]``; NaN for a sequence without tokens (which every gate rejects)."""
    return ((x * mask).sum(-1) / mask.sum(-1)).unsqueeze(-1)


class SymmetricPolicyLoss(nn.Module):
    """``alpha * L_PPO + beta * L_rPPO`` over the tokens where ``action_mask`` is 1, as OpenRLHF 0.11's ``PolicyLoss``."""

    def __init__(
        self,
        clip_eps_low: float = 0.2,
        clip_eps_high: float = 0.2,
        dual_clip: Optional[float] = None,
        token_level_loss: bool = True,
        policy_loss_type: str = "ppo",
        is_correction_level: str = "off",
        is_correction_mode: str = "mask",
        is_correction_gating: str = "ratio",
        is_correction_threshold: Sequence[float] = (0.5, 5.0),
        *,
        alpha: float = 0.5,
        beta: float = 0.4,
        z: float = -1.0,
        reverse_mask: str = "ppo",
    ) -> None:
        super().__init__()
        check_openrlhf_version()
        check_settings(alpha, beta, z, reverse_mask=reverse_mask)
        if clip_eps_high is not None and clip_eps_high != clip_eps_low:
            raise ValueError("symmetric PPO clips the ratio to [1 - eps, 1 + eps]; pass clip_eps_high = clip_eps_low")
        if policy_loss_type != "ppo":
            raise ValueError(f"SymmetricPolicyLoss supports policy_loss_type='ppo' only, got {policy_loss_type!r}")
        if dual_clip is not None and not dual_clip > 1.0:
            raise ValueError(f"dual_clip must be > 1.0, got {dual_clip}")
        # OpenRLHF 0.11's checks of the importance-sampling correction, with its messages
        if is_correction_level not in {"off", "token", "seq"}:
            raise ValueError(f"is_correction_level must be off/token/seq, got {is_correction_level}")
        if is_correction_mode not in {"mask", "clip"}:
            raise ValueError(f"is_correction_mode must be mask/clip, got {is_correction_mode}")
        if is_correction_gating not in {"ratio", "binary_kl", "tv"}:
            raise ValueError(f"is_correction_gating must be ratio/binary_kl/tv, got {is_correction_gating}")
        if is_correction_mode == "clip" and (is_correction_level == "seq" or is_correction_gating != "ratio"):
            raise ValueError("is_correction_mode=clip requires is_correction_level=token and is_correction_gating=ratio")
        if is_correction_gating != "ratio" and is_correction_level != "off" and is_correction_threshold[0] > 0:
            raise ValueError(f"is_correction_gating={is_correction_gating} takes an upper bound only (a single delta)")
        self.clip_eps_low, self.clip_eps_high, self.dual_clip = clip_eps_low, clip_eps_high, dual_clip
        self.clip_eps, self.token_level_loss, self.policy_loss_type = clip_eps_low, token_level_loss, policy_loss_type
        self.is_correction_level, self.is_correction_mode = is_correction_level, is_correction_mode
        self.is_correction_gating, self.is_correction_threshold = is_correction_gating, is_correction_threshold
        self.alpha, self.beta, self.z, self.reverse_mask = alpha, beta, z, reverse_mask
        self.last_stats: dict[str, float] = {}

    def _is_correction(self, old_log_probs: torch.Tensor, rollout_log_probs: Optional[torch.Tensor],
                       mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The per-token coefficient of the train/rollout correction, the share of units it filters, the KL."""
        if rollout_log_probs is None:
            raise ValueError(f"is_correction_level={self.is_correction_level!r} needs rollout_log_probs")
        low, high = self.is_correction_threshold
        seq_level = self.is_correction_level == "seq"
        is_log_ratio = (old_log_probs - rollout_log_probs).detach()  # log(pi_train / pi_rollout)
        if self.is_correction_gating == "ratio":
            stat = (_row_mean(is_log_ratio, mask) if seq_level else is_log_ratio).exp()
        else:
            p = rollout_log_probs.detach().exp().clamp(1e-6, 1 - 1e-6)
            q = old_log_probs.detach().exp().clamp(1e-6, 1 - 1e-6)
            if self.is_correction_gating == "binary_kl":
                stat = p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()
            else:  # total variation of the sampled token's probability
                stat = (p - q).abs()
            if seq_level:
                stat = _row_mean(stat, mask)
        if self.is_correction_mode == "clip":
            coef, filtered = stat.clamp(min=low, max=high), (stat < low) | (stat > high)
        else:  # mask: out-of-band units get weight 0, the others keep their per-token importance weight
            keep = (stat >= low) & (stat <= high)
            coef, filtered = torch.where(keep, is_log_ratio.exp(), torch.zeros_like(is_log_ratio)), ~keep
        share = filtered.float().mean() if seq_level else (filtered * mask).sum() / mask.sum()  # float32, as OpenRLHF
        rollout_kl = ((rollout_log_probs - old_log_probs) * mask).sum() / mask.sum()
        return coef, share, rollout_kl

    def forward(self, log_probs: torch.Tensor, old_log_probs: torch.Tensor, advantages: torch.Tensor,
                action_mask: Optional[torch.Tensor] = None, rollout_log_probs: Optional[torch.Tensor] = None,
                dp_size: int = 1, batch_num_tokens: Optional[float] = None, global_batch_size: Optional[float] = None,
                **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor],
                                   Optional[torch.Tensor]]:
        mask = torch.ones_like(log_probs) if action_mask is None else action_mask.to(log_probs.dtype)
        out = token_symmetric_ppo(log_probs, old_log_probs, advantages, mask, clip=self.clip_eps, alpha=self.alpha,
                                  beta=self.beta, z=self.z, reverse_mask=self.reverse_mask, dual_clip=self.dual_clip)
        loss_mat, rollout_kl, filtered = out.loss_mat, None, None
        if self.is_correction_level != "off":
            coef, filtered, rollout_kl = self._is_correction(old_log_probs, rollout_log_probs, mask)
            loss_mat = torch.where(mask.bool(), coef, torch.zeros_like(coef)) * loss_mat  # no inf * 0 from padding
        loss = aggregate(loss_mat, mask, self.token_level_loss, dp_size, batch_num_tokens, global_batch_size)
        self.last_stats = {"clip_fraction": float(out.clipped_fraction), "approx_kl": float(out.approx_kl),
                           "rl_loss": float(out.rl_loss), "reverse_loss": float(out.reverse_loss)}
        ppo_kl = masked_mean((old_log_probs - log_probs).detach(), mask)
        # vllm_kl and is_filter_ratio are None with the correction off, as OpenRLHF returns them
        return loss, out.clipped_fraction, ppo_kl, rollout_kl, filtered
