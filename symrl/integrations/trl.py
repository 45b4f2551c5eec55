"""Symmetric PPO inside Hugging Face TRL's ``GRPOTrainer`` (``pip install 'symrl[trl]'``, TRL 1.13 to 1.16).

TRL selects its GRPO loss by a ``loss_type`` string and has no loss registry, so a custom loss is a subclass.
:class:`SymmetricGRPOTrainer` is ``GRPOTrainer`` with the per-token policy loss replaced by
:func:`symrl.losses.symmetric_ppo_loss` (``alpha * L_PPO + beta * L_rPPO``, SPEC section 1) on TRL's own
per-token log-probabilities, old log-probabilities, advantages and completion mask;
:class:`SymmetricGRPOConfig` is ``GRPOConfig`` with four more fields::

    from symrl.integrations.trl import SymmetricGRPOConfig, SymmetricGRPOTrainer

    args = SymmetricGRPOConfig(output_dir="out", symmetric_alpha=0.5, symmetric_beta=0.4, symmetric_z=-1.0,
                               loss_type="dapo", beta=0.0)          # every other GRPOConfig field as usual
    trainer = SymmetricGRPOTrainer(model="path/or/hub-id", reward_funcs=my_reward, args=args,
                                   train_dataset=prompts)
    trainer.train()

The symmetric weights are called ``symmetric_alpha`` / ``symmetric_beta`` / ``symmetric_z`` /
``symmetric_reverse_mask`` because TRL's own ``beta`` is the coefficient of the KL term to the reference model
(kept, with TRL's meaning).

The hook is ``GRPOTrainer._compute_loss(self, model, inputs) -> torch.Tensor``: TRL computes the per-token loss
inline there (no smaller method to override), so this subclass re-implements it, following TRL 1.16.0's code
(``trl/trainer/grpo_trainer.py``, Apache-2.0; the method is the same in 1.13 to 1.16) for the supported
options, with only the policy term replaced. Everything around it is TRL's: generation, rewards, group
advantages (``scale_rewards``), the KL term (``beta``, k3 estimator, ``use_bias_correction_kl``), the loss
aggregation of each ``loss_type``, gradient accumulation, the entropy mask and bonus, the off-policy sequence
mask, vLLM importance-sampling correction and the MoE auxiliary loss. With ``symmetric_alpha +
symmetric_beta * |symmetric_z| = 1`` and the authors' mask the gradient equals plain ``GRPOTrainer``'s
(SPEC 1.1: with the mask, symmetric PPO is PPO scaled by ``alpha + beta * |z|``).

Supported: ``loss_type`` in ``grpo``, ``bnpo``, ``dr_grpo``, ``dapo`` (TRL's clipped token ratio), with
``importance_sampling_level="token"``, one clip range (``epsilon_high`` unset or equal to ``epsilon``) and no
two-sided clip (``delta=None``). Anything else raises a ``ValueError`` naming the setting to change.
``RLOOTrainer`` is not supported: see docs/integrations/trl.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

try:
    import trl
    from trl import GRPOConfig, GRPOTrainer
    from trl.trainer.utils import nanmax, nanmin
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("symrl.integrations.trl needs TRL: pip install 'symrl[trl]' (trl>=1.13,<1.17)") from exc

from packaging.specifiers import SpecifierSet

from ..losses import check_settings, symmetric_ppo_loss

__all__ = [
    "CHECKED_TRL_VERSION",
    "SUPPORTED_LOSS_TYPES",
    "SUPPORTED_TRL_VERSIONS",
    "SymmetricGRPOConfig",
    "SymmetricGRPOTrainer",
    "check_trl_version",
    "validate_symmetric_config",
]

SUPPORTED_TRL_VERSIONS = ">=1.13,<1.17"
"""TRL releases whose ``GRPOTrainer._compute_loss`` this module re-implements (identical source in 1.13.0, 1.14.0,
1.15.0 and 1.16.0, compared by hand); the tests run against :data:`CHECKED_TRL_VERSION`."""
CHECKED_TRL_VERSION = "1.16.0"
SUPPORTED_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
"""TRL loss types whose policy term is PPO's clipped token ratio; they differ only in how tokens are aggregated
(veRL's names: ``grpo`` = seq-mean-token-mean, ``bnpo`` = token-mean over the micro-batch, ``dapo`` = token-mean
over the accumulated batch, ``dr_grpo`` = token-sum over batch * max_completion_length)."""


def check_trl_version(version: str | None = None) -> str:
    """Raise ``ImportError`` unless ``version`` (default: the installed TRL's) is in :data:`SUPPORTED_TRL_VERSIONS`.

    Returns the version checked. Pre-releases of an unsupported release (``1.17.0.dev0``) are refused too.
    """
    version = trl.__version__ if version is None else version
    if not SpecifierSet(SUPPORTED_TRL_VERSIONS).contains(version, prereleases=True):
        raise ImportError(
            f"symrl.integrations.trl supports trl{SUPPORTED_TRL_VERSIONS} (checked with {CHECKED_TRL_VERSION}), "
            f"found trl {version}: its GRPOTrainer._compute_loss, which the symmetric trainer re-implements, may differ; "
            f"install a supported TRL: pip install 'trl{SUPPORTED_TRL_VERSIONS}' (or pip install 'symrl[trl]')"
        )
    return version


check_trl_version()


@dataclass
class SymmetricGRPOConfig(GRPOConfig):
    """``GRPOConfig`` plus the symmetric loss's settings (every TRL field keeps TRL's meaning and default).

    The symmetric weights have their own names because TRL's ``beta`` is the KL coefficient. The policy loss is
    ``symmetric_alpha * L_PPO + symmetric_beta * L_rPPO``, ``L_rPPO = -z * mean(m * A * (1 - p) / p_old)`` per
    token (SPEC section 1). Defaults are the paper's language-model setting (alpha 0.5, beta 0.4, z -1, the
    authors' mask). Validated on construction (and again by the trainer), see :class:`SymmetricGRPOTrainer`.
    """

    symmetric_alpha: float = field(
        default=0.5,
        metadata={"help": "Weight of the clipped PPO/GRPO token loss in the symmetric loss (>= 0). Not TRL's `beta` "
                          "(the KL coefficient)."},
    )
    symmetric_beta: float = field(
        default=0.4,
        metadata={"help": "Weight of the reverse PPO term -Z * m * A * (1 - p) / p_old (>= 0). Not TRL's `beta` "
                          "(the KL coefficient)."},
    )
    symmetric_z: float = field(
        default=-1.0,
        metadata={"help": "Z, the reverse cross entropy's log 0 (< 0; -1 in every published run)."},
    )
    symmetric_reverse_mask: str = field(
        default="ppo",
        metadata={"help": "'ppo' (the authors' mask: the reverse term acts only where the clipped objective has a "
                          "gradient, which makes the loss PPO scaled by alpha + beta * |z|) or 'none' (the paper's "
                          "earlier, unmasked reverse term)."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        validate_symmetric_config(self)


def validate_symmetric_config(args: SymmetricGRPOConfig) -> None:
    """Raise ``ValueError`` (naming the setting to change) for settings the symmetric trainer does not support."""
    check_settings(args.symmetric_alpha, args.symmetric_beta, args.symmetric_z,
                   reverse_mask=args.symmetric_reverse_mask, prefix="symmetric_")
    if args.loss_type not in SUPPORTED_LOSS_TYPES:
        raise ValueError(
            f"SymmetricGRPOTrainer supports loss_type in {SUPPORTED_LOSS_TYPES} (PPO's clipped token ratio, which "
            f"the reverse term is defined with), got {args.loss_type!r}; set loss_type='dapo' (TRL's default) or one "
            "of the others")
    if args.importance_sampling_level != "token":
        raise ValueError(
            f"SymmetricGRPOTrainer needs importance_sampling_level='token' (the reverse term uses each token's "
            f"probability and ratio), got {args.importance_sampling_level!r}; set importance_sampling_level='token'")
    if args.epsilon_high is not None and args.epsilon_high != args.epsilon:
        raise ValueError(
            f"SymmetricGRPOTrainer clips the ratio to [1 - epsilon, 1 + epsilon] (one clip range, as the authors' "
            f"reverse mask), got epsilon={args.epsilon}, epsilon_high={args.epsilon_high}; set epsilon_high=None")
    if args.delta is not None:
        raise ValueError(f"SymmetricGRPOTrainer does not support the two-sided clip delta={args.delta} (the reverse "
                         "term is defined for the plain clipped ratio); set delta=None")
    if not args.epsilon >= 0:
        raise ValueError(f"epsilon (the clip range) must be >= 0, got {args.epsilon}")
    if getattr(args, "use_liger_kernel", False) and hasattr(GRPOTrainer, "compute_liger_loss"):
        # TRL 1.13: compute_loss hands the whole loss to Liger's fused GRPO loss, bypassing _compute_loss
        raise ValueError("with use_liger_kernel=True this TRL computes the loss with Liger's fused GRPO loss, without "
                         "the symmetric term; set use_liger_kernel=False or install trl>=1.14 (whose Liger path goes "
                         "through the loss SymmetricGRPOTrainer replaces)")


def _check_hooks() -> None:
    missing = [name for name in ("_compute_loss", "_get_per_token_logps_and_entropies") if not hasattr(GRPOTrainer, name)]
    if missing:
        raise ImportError(f"this TRL's GRPOTrainer has no {missing}, which SymmetricGRPOTrainer overrides or calls; "
                          f"install trl{SUPPORTED_TRL_VERSIONS}")


class SymmetricGRPOTrainer(GRPOTrainer):
    """TRL's ``GRPOTrainer`` trained with the symmetric PPO loss of :func:`symrl.losses.symmetric_ppo_loss`.

    Takes exactly ``GRPOTrainer``'s arguments; ``args`` must be a :class:`SymmetricGRPOConfig` (``None`` gives
    its defaults). Raises ``ImportError`` for an unsupported TRL version, ``TypeError`` for a plain
    ``GRPOConfig`` and ``ValueError`` for an unsupported setting (see :func:`validate_symmetric_config`).
    Logs ``symmetric/reverse_loss`` (the token mean of the reverse term, before ``symmetric_beta``) and
    ``symmetric/active_fraction`` (the share of tokens where the authors' mask is 1) beside TRL's metrics.
    """

    def __init__(self, model: Any, reward_funcs: Any = None, args: SymmetricGRPOConfig | None = None,
                 *rest: Any, **kwargs: Any) -> None:
        check_trl_version()
        _check_hooks()
        if args is None:
            name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "") or "model"
            args = SymmetricGRPOConfig(f"{name.split('/')[-1]}-GRPO")
        elif not isinstance(args, SymmetricGRPOConfig):
            raise TypeError(
                f"SymmetricGRPOTrainer needs args=SymmetricGRPOConfig(...) (GRPOConfig plus symmetric_alpha, "
                f"symmetric_beta, symmetric_z, symmetric_reverse_mask), got {type(args).__name__}; build a "
                "SymmetricGRPOConfig with the same fields")
        validate_symmetric_config(args)  # again: a config may have been changed after it was built
        super().__init__(model, reward_funcs, args, *rest, **kwargs)

    def _compute_loss(self, model: torch.nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        """TRL 1.16's ``GRPOTrainer._compute_loss`` for the supported options, with symrl's policy term."""
        # Per-token log-probabilities and entropies of the completion, exactly as TRL computes them
        prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
        logits_to_keep = completion_ids.size(1)
        mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]

        per_token_logps, entropies, aux_loss = self._get_per_token_logps_and_entropies(
            model,
            input_ids,
            attention_mask,
            logits_to_keep,
            compute_entropy=True,
            compute_aux_loss=self.aux_loss_enabled,
            pixel_values=inputs.get("pixel_values"),
            image_grid_thw=inputs.get("image_grid_thw"),
            num_images=inputs.get("num_images"),
            pixel_attention_mask=inputs.get("pixel_attention_mask"),
            spatial_shapes=inputs.get("spatial_shapes"),
            num_tiles=inputs.get("num_tiles"),
            image_sizes=inputs.get("image_sizes"),
            token_type_ids=inputs.get("token_type_ids"),
            mm_token_type_ids=inputs.get("mm_token_type_ids"),
            image_position_ids=inputs.get("image_position_ids"),
        )

        if self.top_entropy_quantile < 1.0:
            entropy_mask = self.get_high_entropy_mask(entropies, mask, 1 - self.top_entropy_quantile)
        else:
            entropy_mask = None

        advantages = inputs["advantages"]
        if advantages.dim() == 1:  # (B,) in GRPO; subclasses may give (B, T)
            advantages = advantages.unsqueeze(1)
        # TRL skips the old log-probs when every batch is used once, on-policy: they equal the current ones
        old_per_token_logps = inputs.get("old_per_token_logps")
        old_per_token_logps = per_token_logps.detach() if old_per_token_logps is None else old_per_token_logps

        if self.off_policy_mask_threshold is not None:
            sampling_per_token_logps = inputs.get("sampling_per_token_logps", old_per_token_logps)
            off_policy_mask = self.get_off_policy_mask(
                advantages=advantages,
                per_token_logps=per_token_logps,
                sampling_per_token_logps=sampling_per_token_logps,
                mask=mask,
                off_policy_threshold=self.off_policy_mask_threshold,
            )

        coef_1 = torch.exp(per_token_logps - old_per_token_logps)  # token-level ratio (the only level supported)

        if self.beta != 0.0:  # TRL's KL term to the reference model (k3 estimator), TRL's `beta`
            ref_per_token_logps = inputs["ref_per_token_logps"]
            per_token_kl = (
                torch.exp(ref_per_token_logps - per_token_logps) - (ref_per_token_logps - per_token_logps) - 1
            )
            if self.args.use_bias_correction_kl:
                per_token_kl = per_token_kl * coef_1

        # The policy term: symrl's symmetric PPO loss per token (0 where mask is 0), in place of TRL's
        # -min(coef_1 * A, clip(coef_1, 1 - eps, 1 + eps) * A)
        args = self.args
        out = symmetric_ppo_loss(
            per_token_logps,
            old_per_token_logps,
            advantages.expand_as(per_token_logps),
            clip_range=self.epsilon_low,
            alpha=args.symmetric_alpha,
            beta=args.symmetric_beta,
            z=args.symmetric_z,
            reverse_mask=args.symmetric_reverse_mask,
            mask=mask,
        )
        per_token_loss = out.per_sample

        if self.off_policy_mask_threshold is not None:
            per_token_loss = per_token_loss * off_policy_mask

        if entropy_mask is not None:
            per_token_loss = per_token_loss * entropy_mask

        if self.use_vllm and self.vllm_importance_sampling_correction:
            per_token_loss = per_token_loss * inputs["importance_sampling_ratio"]

        if self.beta != 0.0:
            per_token_loss = per_token_loss + self.beta * per_token_kl

        # TRL's aggregation for each loss type (gradient accumulation included)
        mode = "train" if self.model.training else "eval"
        accumulation = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        if self.loss_type == "grpo":
            loss = ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
            policy_loss = loss.detach()
            loss = loss / accumulation
        elif self.loss_type == "bnpo":
            loss = (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0)
            policy_loss = loss.detach()
            loss = loss / accumulation
        elif self.loss_type == "dr_grpo":
            loss = (per_token_loss * mask).sum() / (per_token_loss.size(0) * self.max_completion_length)
            policy_loss = loss.detach()
            loss = loss / accumulation
        elif self.loss_type == "dapo":
            # `num_items_in_batch` spans the generation batch, so rescale it to one accumulation window
            normalizer = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes
            if mode == "train":
                normalizer = normalizer * self.current_gradient_accumulation_steps / self.args.steps_per_generation
            loss = (per_token_loss * mask).sum() / normalizer
            policy_loss = loss.detach()
        else:  # validated at construction; reached only if loss_type was changed afterwards
            raise ValueError(f"SymmetricGRPOTrainer supports loss_type in {SUPPORTED_LOSS_TYPES}, "
                             f"got {self.loss_type!r}")

        # Entropy bonus (static or adaptive), as TRL
        if self._entropy_bonus_enabled:
            effective_mask = mask if entropy_mask is None else mask * entropy_mask
            entropy_loss = (entropies * effective_mask).sum() / effective_mask.sum().clamp(min=1.0) / accumulation
            if self.use_adaptive_entropy:
                apply_coef = self.entropy_coef if self._last_world_entropy <= self.args.entropy_target else 0.0
            else:
                apply_coef = self.entropy_coef
            loss = loss - apply_coef * entropy_loss
            self._metrics[mode]["policy_loss"].append(self.accelerator.gather(policy_loss).nanmean().item())
            if self.use_adaptive_entropy and mode == "train":
                stats = torch.stack([(entropies * effective_mask).sum(), effective_mask.sum()]).detach()
                self._entropy_window_stats = (
                    stats if self._entropy_window_stats is None else self._entropy_window_stats + stats
                )
                if self.accelerator.sync_gradients:
                    window_stats = self.accelerator.reduce(self._entropy_window_stats, reduction="sum")
                    world_entropy = (window_stats[0] / window_stats[1].clamp(min=1.0)).item()
                    if world_entropy <= self.args.entropy_target:
                        self.entropy_coef = min(self.entropy_coef + self.args.entropy_coef_delta,
                                                self.args.entropy_coef_max)
                    else:
                        self.entropy_coef = max(self.entropy_coef - self.args.entropy_coef_delta,
                                                self.args.entropy_coef_min)
                    self._last_world_entropy = world_entropy
                    self._entropy_window_stats = None
            if mode == "train" and self.accelerator.sync_gradients:
                self._metrics[mode]["entropy_coef"].append(self.entropy_coef)

        if self.aux_loss_enabled:  # MoE load-balancing loss, scaled for accumulation as TRL
            loss = loss + self.router_aux_loss_coef * aux_loss / accumulation
            self._metrics[mode]["aux_loss"].append(self.accelerator.gather_for_metrics(aux_loss).mean().item())

        # TRL's metrics, and the symmetric term's
        def masked_seq_mean(x: torch.Tensor) -> torch.Tensor:
            return (x * mask).sum(-1) / mask.sum(-1)

        def global_masked_mean(x: torch.Tensor) -> float:
            totals = self.accelerator.reduce(torch.stack([(x * mask).sum(), mask.sum().float()]), reduction="sum")
            return (totals[0] / totals[1].clamp(min=1.0)).item()

        if self.beta != 0.0:
            self._metrics[mode]["kl"].append(global_masked_mean(per_token_kl))
        self._metrics[mode]["entropy"].append(global_masked_mean(entropies))

        is_low_clipped = (coef_1 < 1 - self.epsilon_low) & (advantages < 0)
        is_high_clipped = (coef_1 > 1 + self.epsilon_high) & (advantages > 0)
        is_region_clipped = is_low_clipped | is_high_clipped
        self._metrics[mode]["clip_ratio/low_mean"].append(global_masked_mean(is_low_clipped.float()))
        self._metrics[mode]["clip_ratio/high_mean"].append(global_masked_mean(is_high_clipped.float()))
        self._metrics[mode]["clip_ratio/region_mean"].append(global_masked_mean(is_region_clipped.float()))
        gathered_low_clip = self.accelerator.gather(masked_seq_mean(is_low_clipped.float()))
        self._metrics[mode]["clip_ratio/low_min"].append(nanmin(gathered_low_clip).item())
        gathered_high_clip = self.accelerator.gather(masked_seq_mean(is_high_clipped.float()))
        self._metrics[mode]["clip_ratio/high_max"].append(nanmax(gathered_high_clip).item())
        # the reverse term's token mean (before symmetric_beta) and the share of tokens where the mask is 1
        self._metrics[mode]["symmetric/reverse_loss"].append(
            self.accelerator.gather(out.reverse_loss.detach()).nanmean().item())
        self._metrics[mode]["symmetric/active_fraction"].append(
            self.accelerator.gather(out.active_fraction).nanmean().item())
        return loss

