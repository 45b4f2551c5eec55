"""Symmetric PPO as a veRL policy loss, ``symmetric_ppo`` (veRL >=0.9,<0.10; checked on 0.9.1 by
``benchmarks/check_verl.py``, docs/integrations/verl-openrlhf.md).

veRL (GPU RLHF with Ray and vLLM) picks its policy loss by name from ``POLICY_LOSS_REGISTRY``. symrl's
``pyproject.toml`` declares this module in veRL's ``verl.plugins`` entry-point group, so once symrl is installed in
veRL's environment, ``import verl`` (in the driver and in every Ray worker) imports it and it registers
:func:`symmetric_ppo_policy_loss` through ``register_policy_loss``: a veRL script needs no ``import symrl``. Select it
and set the symmetric weights on the actor's policy-loss config, whose class must be this module's
:class:`SymmetricPolicyLossConfig` (veRL's own ``PolicyLossConfig`` rejects keys it does not know)::

    actor_rollout_ref.actor.policy_loss._target_=symrl.integrations.verl.SymmetricPolicyLossConfig
    actor_rollout_ref.actor.policy_loss.loss_mode=symmetric_ppo
    +actor_rollout_ref.actor.policy_loss.symmetric_alpha=0.5
    +actor_rollout_ref.actor.policy_loss.symmetric_beta=0.4
    +actor_rollout_ref.actor.policy_loss.symmetric_z=-1.0

(``VERL_USE_EXTERNAL_PLUGINS=none`` turns veRL's entry-point discovery off; then import this module yourself, e.g.
with ``VERL_USE_EXTERNAL_MODULES=symrl.integrations.verl``.)

The loss takes veRL's 7-argument call ``(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, config,
rollout_is_weights)`` and returns ``(pg_loss, metrics)`` with veRL's metric names. The per-token loss is
:func:`symrl.losses.symmetric_ppo_loss`'s, with veRL's dual clip (``clip_ratio_c``, under which the authors' mask
turns the reverse term off too, see ``_token_ppo``), multiplied by the rollout importance weights as in veRL's
``vanilla`` loss, and reduced by veRL's own ``agg_loss`` in the actor's ``loss_agg_mode`` with the global batch
sizes veRL puts in ``config.global_batch_info`` (every mode veRL has). Without veRL installed it still runs, on
``token-mean`` only. With alpha 1 and beta 0 it equals veRL's ``vanilla`` loss, gradients and metrics except where a
log-ratio exceeds 20 in magnitude (veRL clamps it there). Not supported: an asymmetric clip range
(``clip_ratio_low != clip_ratio_high``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Optional

import torch

from ..losses import check_settings, masked_mean
from ._token_ppo import check_version, token_symmetric_ppo

__all__ = ["SUPPORTED_VERL", "SymmetricPolicyLossConfig", "symmetric_ppo_policy_loss", "register"]

SUPPORTED_VERL = ((0, 9), (0, 10))
"""veRL versions the plug-in is written for: >=0.9,<0.10."""

DEFAULTS = {"symmetric_alpha": 0.5, "symmetric_beta": 0.4, "symmetric_z": -1.0, "symmetric_reverse_mask": "ppo"}


def check_verl_version(version: str) -> None:
    """Raise :class:`symrl.errors.SymrlError` naming the supported range unless veRL ``version`` is supported."""
    check_version("veRL", version, *SUPPORTED_VERL)


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
    ``clip_ratio_high``) is PPO's epsilon, ``clip_ratio_c`` (default 3) the dual clip, and its ``policy_loss``
    section may hold ``symmetric_alpha`` (default 0.5), ``symmetric_beta`` (default 1.0), ``symmetric_z``
    (default -1.0) and ``symmetric_reverse_mask`` (``"ppo"``, the authors' mask, or ``"none"``).
    """
    clip = float(_get(config, "clip_ratio_low", _get(config, "clip_ratio", 0.2)))
    if float(_get(config, "clip_ratio_high", clip)) != clip:
        raise ValueError("symmetric_ppo clips the ratio to [1 - eps, 1 + eps]; set clip_ratio_low = clip_ratio_high")
    section = _get(config, "policy_loss", None)
    params = {key: _get(section, key, default) for key, default in DEFAULTS.items()}
    out = token_symmetric_ppo(
        log_prob, old_log_prob, advantages, response_mask, clip=clip, alpha=float(params["symmetric_alpha"]),
        beta=float(params["symmetric_beta"]), z=float(params["symmetric_z"]),
        reverse_mask=str(params["symmetric_reverse_mask"]), dual_clip=float(_get(config, "clip_ratio_c", 3.0)),
    )
    loss_mat = out.loss_mat if rollout_is_weights is None else out.loss_mat * rollout_is_weights
    pg_loss = _aggregate(loss_mat, response_mask, loss_agg_mode, config)
    ppo_kl = masked_mean((old_log_prob - log_prob).detach(), response_mask)
    metrics = {"actor/pg_clipfrac": float(out.clipped_fraction), "actor/ppo_kl": float(ppo_kl),
               "actor/pg_clipfrac_lower": float(out.dual_fraction),
               "actor/reverse_loss": float(out.reverse_loss)}
    return pg_loss, metrics


def _unsupported(version: str):
    def symmetric_ppo_unsupported(*args: Any, **kwargs: Any):
        check_verl_version(version)  # raises, naming the supported range

    return symmetric_ppo_unsupported


def register() -> bool:
    """Register the loss with veRL under ``symmetric_ppo``; False when veRL is not installed.

    On a veRL outside :data:`SUPPORTED_VERL` it warns and registers a stand-in that raises
    :class:`symrl.errors.SymrlError` naming the supported range when veRL calls it.
    """
    try:
        import verl  # noqa: PLC0415
        from verl.trainer.ppo.core_algos import register_policy_loss  # noqa: PLC0415
    except ImportError:
        return False
    version = str(getattr(verl, "__version__", "unknown"))
    try:
        check_verl_version(version)
    except Exception as error:  # noqa: BLE001 - veRL's plug-in loader would swallow it: surface it at use
        warnings.warn(str(error), stacklevel=2)
        register_policy_loss("symmetric_ppo")(_unsupported(version))
        return True
    register_policy_loss("symmetric_ppo")(symmetric_ppo_policy_loss)
    return True


try:  # the config class veRL's Hydra `_target_` instantiates; only where veRL is installed
    from verl.workers.config import PolicyLossConfig as _PolicyLossConfig
except ImportError:
    _PolicyLossConfig = None

if _PolicyLossConfig is not None:

    @dataclass
    class SymmetricPolicyLossConfig(_PolicyLossConfig):
        """veRL's ``PolicyLossConfig`` with the symmetric loss's settings (veRL rejects unknown keys in its own)."""

        symmetric_alpha: float = DEFAULTS["symmetric_alpha"]
        symmetric_beta: float = DEFAULTS["symmetric_beta"]
        symmetric_z: float = DEFAULTS["symmetric_z"]
        symmetric_reverse_mask: str = DEFAULTS["symmetric_reverse_mask"]

        def __post_init__(self) -> None:
            parent = getattr(super(), "__post_init__", None)
            if parent is not None:
                parent()
            check_settings(self.symmetric_alpha, self.symmetric_beta, self.symmetric_z,
                           reverse_mask=self.symmetric_reverse_mask, prefix="symmetric_")

else:

    @dataclass
    class SymmetricPolicyLossConfig:  # type: ignore[no-redef]
        """The symmetric loss's settings without veRL (for calling the loss on tensors)."""

        loss_mode: str = "symmetric_ppo"
        symmetric_alpha: float = DEFAULTS["symmetric_alpha"]
        symmetric_beta: float = DEFAULTS["symmetric_beta"]
        symmetric_z: float = DEFAULTS["symmetric_z"]
        symmetric_reverse_mask: str = DEFAULTS["symmetric_reverse_mask"]


register()
