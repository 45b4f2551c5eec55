"""Symmetric PPO as a veRL policy loss, registered as ``symmetric_ppo`` when veRL is installed.

veRL (GPU RLHF with Ray and vLLM) picks its policy loss by name from ``POLICY_LOSS_REGISTRY``. Importing this
module registers :func:`symmetric_ppo_policy_loss` there; select it and set the symmetric weights in the
actor's policy-loss config::

    actor_rollout_ref.actor.policy_loss.loss_mode=symmetric_ppo
    +actor_rollout_ref.actor.policy_loss.symmetric_alpha=0.5
    +actor_rollout_ref.actor.policy_loss.symmetric_beta=0.4
    +actor_rollout_ref.actor.policy_loss.symmetric_z=-1.0

and import ``symrl.integrations.verl`` in the worker processes (e.g. through veRL's custom-module hook or a
``sitecustomize``). The loss itself is :func:`symrl.losses.symmetric_ppo_loss` on veRL's ``[B, T]`` tensors
with the response mask; only veRL's ``token-mean`` aggregation matches that masked mean.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from ..losses import symmetric_ppo_loss

__all__ = ["symmetric_ppo_policy_loss", "register"]


def _get(config: Any, key: str, default: Any) -> Any:
    """A key of a dict / OmegaConf DictConfig, or an attribute of a dataclass config."""
    if config is None:
        return default
    if hasattr(config, "get"):
        return config.get(key, default)
    return getattr(config, key, default)


def symmetric_ppo_policy_loss(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config: Optional[Any] = None,
    *args: Any,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """veRL's policy-loss signature; returns ``(pg_loss, pg_clipfrac, ppo_kl, pg_clipfrac_lower)``.

    ``config`` is the actor config: its ``clip_ratio`` (or ``clip_ratio_low``) is PPO's epsilon, and its
    ``policy_loss`` section may hold ``symmetric_alpha`` (default 0.5), ``symmetric_beta`` (default 1.0) and
    ``symmetric_z`` (default -1.0).
    """
    if loss_agg_mode != "token-mean":
        raise ValueError(f"symmetric_ppo supports loss_agg_mode='token-mean' (a masked mean over tokens), got {loss_agg_mode!r}")
    clip = _get(config, "clip_ratio_low", None) or _get(config, "clip_ratio", 0.2)
    section = _get(config, "policy_loss", None)
    out = symmetric_ppo_loss(
        log_prob, old_log_prob, advantages, clip_range=float(clip), mask=response_mask,
        alpha=float(_get(section, "symmetric_alpha", 0.5)), beta=float(_get(section, "symmetric_beta", 1.0)),
        z=float(_get(section, "symmetric_z", -1.0)),
    )
    with torch.no_grad():  # share of tokens clipped from below with a negative advantage (veRL's lower clip fraction)
        ratio = (log_prob - old_log_prob).exp()
        lower = ((ratio < 1.0 - float(clip)) & (advantages < 0)).to(ratio.dtype)
        lower = (lower * response_mask).sum() / response_mask.sum().clamp_min(1)
    return out.loss, out.clip_fraction, out.approx_kl, lower


def register() -> bool:
    """Register the loss with veRL under ``symmetric_ppo``; False when veRL is not installed."""
    try:
        from verl.trainer.ppo.core_algos import register_policy_loss  # noqa: PLC0415
    except ImportError:
        return False
    register_policy_loss("symmetric_ppo")(symmetric_ppo_policy_loss)
    return True


register()
