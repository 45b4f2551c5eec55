"""Symmetric PPO as a veRL policy loss, registered as ``symmetric_ppo`` when veRL is installed (written against
veRL 0.9's policy-loss interface).

veRL (GPU RLHF with Ray and vLLM) picks its policy loss by name from ``POLICY_LOSS_REGISTRY``. Importing this
module registers :func:`symmetric_ppo_policy_loss` there; select it and set the symmetric weights in the
actor's policy-loss config::

    actor_rollout_ref.actor.policy_loss.loss_mode=symmetric_ppo
    +actor_rollout_ref.actor.policy_loss.symmetric_alpha=0.5
    +actor_rollout_ref.actor.policy_loss.symmetric_beta=0.4
    +actor_rollout_ref.actor.policy_loss.symmetric_z=-1.0

and import ``symrl.integrations.verl`` in the worker processes (e.g. through veRL's custom-module hook or a
``sitecustomize``). The per-token loss is :func:`symrl.losses.symmetric_ppo_loss`'s on veRL's ``[B, T]``
tensors, aggregated by veRL's own ``agg_loss`` (every ``loss_agg_mode``, with the global batch sizes of the
actor config); without veRL, ``token-mean`` over this micro-batch. Rollout importance weights multiply it as
in veRL's vanilla loss. Not supported: an asymmetric clip range and dual clip. With alpha 1 and beta 0 the
loss and metrics equal veRL 0.9.1's vanilla PPO loss in all four aggregations where no token reaches the dual
clip (checked once against its source; veRL is not a test dependency).
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from ..losses import masked_mean, symmetric_ppo_loss

__all__ = ["symmetric_ppo_policy_loss", "register"]


def _get(config: Any, key: str, default: Any) -> Any:
    """A key of a dict / OmegaConf DictConfig, or an attribute of a dataclass config."""
    if config is None:
        return default
    if hasattr(config, "get"):
        value = config.get(key, default)
    else:
        value = getattr(config, key, default)
    return default if value is None else value


def _aggregate(loss_mat: torch.Tensor, mask: torch.Tensor, mode: str, config: Any) -> torch.Tensor:
    try:
        from verl.trainer.ppo.core_algos import agg_loss  # noqa: PLC0415
    except ImportError:
        if mode != "token-mean":
            raise ValueError(f"loss_agg_mode {mode!r} needs veRL's agg_loss; without veRL only 'token-mean'") from None
        return masked_mean(loss_mat, mask)
    return agg_loss(loss_mat=loss_mat, loss_mask=mask, loss_agg_mode=mode, **dict(_get(config, "global_batch_info", {})))


def symmetric_ppo_policy_loss(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config: Optional[Any] = None,
    rollout_is_weights: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """veRL's policy-loss signature; returns ``(pg_loss, metrics)`` with veRL's metric names.

    ``config`` is the actor config: its ``clip_ratio`` (or ``clip_ratio_low``, which must then equal
    ``clip_ratio_high``) is PPO's epsilon, and its ``policy_loss`` section may hold ``symmetric_alpha``
    (default 0.5), ``symmetric_beta`` (default 1.0) and ``symmetric_z`` (default -1.0).
    """
    clip = float(_get(config, "clip_ratio_low", _get(config, "clip_ratio", 0.2)))
    if float(_get(config, "clip_ratio_high", clip)) != clip:
        raise ValueError("symmetric_ppo clips the ratio to [1 - eps, 1 + eps]; set clip_ratio_low = clip_ratio_high")
    section = _get(config, "policy_loss", None)
    out = symmetric_ppo_loss(
        log_prob, old_log_prob, advantages, clip_range=clip, mask=response_mask,
        alpha=float(_get(section, "symmetric_alpha", 0.5)), beta=float(_get(section, "symmetric_beta", 1.0)),
        z=float(_get(section, "symmetric_z", -1.0)),
    )
    loss_mat = out.per_sample if rollout_is_weights is None else out.per_sample * rollout_is_weights
    pg_loss = _aggregate(loss_mat, response_mask, loss_agg_mode, config)
    ppo_kl = masked_mean((old_log_prob - log_prob).detach(), response_mask)
    metrics = {"actor/pg_clipfrac": float(out.clipped_fraction), "actor/ppo_kl": float(ppo_kl),
               "actor/pg_clipfrac_lower": 0.0,  # the dual clip's share; symmetric PPO has no dual clip
               "actor/reverse_loss": float(out.reverse_loss.detach())}
    return pg_loss, metrics


def register() -> bool:
    """Register the loss with veRL under ``symmetric_ppo``; False when veRL is not installed."""
    try:
        from verl.trainer.ppo.core_algos import register_policy_loss  # noqa: PLC0415
    except ImportError:
        return False
    register_policy_loss("symmetric_ppo")(symmetric_ppo_policy_loss)
    return True


register()
