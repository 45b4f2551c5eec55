"""Symmetric PPO and A2C loss modules for TorchRL (``pip install 'symrl[torchrl]'``).

``SymmetricClipPPOLoss`` is TorchRL's ``ClipPPOLoss`` and ``SymmetricA2CLoss`` its ``A2CLoss``, each with
one more output, ``loss_reverse = beta * L_reverse``, and ``loss_objective`` scaled by ``alpha``. A training
loop that sums the ``loss_*`` entries therefore minimises ``alpha * L_RL + beta * L_reverse`` plus the
critic and entropy terms, with no other change::

    loss_module = SymmetricClipPPOLoss(actor, critic, alpha=0.5, beta=1.0, z=-1.0, clip_epsilon=0.2)
    out = loss_module(batch)
    loss = sum(v for k, v in out.items() if k.startswith("loss_"))

The reverse term is computed by :func:`symrl.losses.symmetric_ppo_loss` / ``symmetric_a2c_loss`` from the
log-probabilities and (normalised) advantages the parent module computed in the same call: no second
forward pass. It needs the probability of the taken action, so use a categorical actor (Discrete or
MultiDiscrete actions, one-hot or index; continuous tasks through :class:`symrl.envs.wrappers.DiscretizeAction`).
With the authors' mask, SPPO's gradient is PPO's times ``alpha + beta * |z|`` (SPEC 1.1): compare with a
``ClipPPOLoss`` whose objective is scaled by that factor.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

try:
    from torchrl.objectives import A2CLoss, ClipPPOLoss
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("symrl.integrations.torchrl needs TorchRL: pip install 'symrl[torchrl]'") from exc

from ..losses import check_settings, symmetric_a2c_loss, symmetric_ppo_loss

__all__ = ["SymmetricA2CLoss", "SymmetricClipPPOLoss"]


class _Symmetric:
    """Settings, validation and the mask lookup shared by the two loss modules."""

    def _init_symmetric(self, actor_network: Any, alpha: float, beta: float, z: float, variant: str) -> None:
        for module in actor_network.modules() if isinstance(actor_network, torch.nn.Module) else ():
            distribution = getattr(module, "distribution_class", None)
            if isinstance(distribution, type) and not getattr(distribution, "has_enumerate_support", False):
                raise ValueError(f"{type(self).__name__} needs a categorical actor (the reverse term uses the taken "
                                 f"action's probability), got {distribution.__name__}; for continuous actions wrap the "
                                 "env with symrl.envs.wrappers.DiscretizeAction and use a categorical actor")
        check_settings(alpha, beta, z, variant)
        if self.reduction != "mean":
            raise ValueError(f"{type(self).__name__} supports reduction='mean' only (the symmetric loss is a mean), "
                             f"got {self.reduction!r}")
        self.alpha, self.beta, self.z, self.variant = float(alpha), float(beta), float(z), variant
        self._seen: dict[str, torch.Tensor] = {}

    def _valid_mask(self, tensordict: Any, shape: torch.Size) -> Optional[torch.Tensor]:
        """The validity mask the parent's reduction applies (e.g. padded steps), as a 0/1 tensor of ``shape``."""
        mask = None
        for key in self._loss_mask_keys():
            found = tensordict.get(key, None)
            if found is not None:
                found = self._expand_loss_mask(found, torch.empty(shape)).expand(shape)
                mask = found if mask is None else mask & found
        return mask

    def _take_seen(self, *keys: str) -> dict[str, torch.Tensor]:
        seen, self._seen = self._seen, {}
        missing = [key for key in keys if key not in seen]
        if missing:  # a TorchRL version whose forward no longer goes through the hooks used here
            raise RuntimeError(f"{type(self).__name__} did not see {missing} during the parent's forward; "
                               "this TorchRL version is not supported, install 'symrl[torchrl]' (torchrl 0.14)")
        return seen

    def _add_reverse(self, td_out: Any, reverse_loss: torch.Tensor) -> Any:
        td_out.set("loss_objective", self.alpha * td_out.get("loss_objective"))
        td_out.set("loss_reverse", self.beta * reverse_loss)
        return td_out


class SymmetricClipPPOLoss(_Symmetric, ClipPPOLoss):
    """TorchRL ``ClipPPOLoss`` plus ``loss_reverse = beta * L_rPPO`` (SPEC 1); ``loss_objective`` is times ``alpha``.

    Args:
        alpha: weight of the clipped surrogate (``loss_objective``).
        beta: weight of the reverse PPO loss ``-z * mean(m * A * (1 - p) / p_old)``.
        z: "log 0" of the reverse cross entropy, negative (-1 in every published run).
        variant: ``"rce"`` (the paper) or ``"mae"``.
        reverse_mask: ``"ppo"`` (the authors' mask: active where the clipped objective has a gradient)
            or ``"none"``.
        **kwargs: every argument of ``ClipPPOLoss`` except an asymmetric ``clip_epsilon``, ``delay_actor``
            and ``max_importance_ratio``, whose ratios the symmetric term does not define.

    Extra outputs: ``loss_reverse`` and ``active_fraction`` (share of samples where the mask is 1).
    """

    def __init__(self, actor_network=None, critic_network=None, *, alpha: float = 0.5, beta: float = 1.0,
                 z: float = -1.0, variant: str = "rce", reverse_mask: str = "ppo", **kwargs: Any):
        super().__init__(actor_network, critic_network, **kwargs)
        if self._asymmetric_clip or self.delay_actor or self.max_importance_ratio is not None:
            raise ValueError("SymmetricClipPPOLoss needs a float clip_epsilon, delay_actor=False and no "
                             "max_importance_ratio: the reverse term is defined for the plain clipped ratio")
        check_settings(reverse_mask=reverse_mask)
        self.reverse_mask = reverse_mask
        self._init_symmetric(actor_network, alpha, beta, z, variant)

    @property
    def out_keys(self):
        if self._out_keys is None:
            self._out_keys = [*ClipPPOLoss.out_keys.fget(self), "loss_reverse", "active_fraction"]
        return self._out_keys

    @out_keys.setter
    def out_keys(self, values):
        self._out_keys = values

    # The parent's forward calls these two once each; keep what they return for the reverse term.
    def _maybe_normalize_advantage(self, advantage, tensordict, *, update_norm):
        self._seen["advantage"] = super()._maybe_normalize_advantage(advantage, tensordict, update_norm=update_norm)
        return self._seen["advantage"]

    def _log_weight(self, tensordict, adv_shape):
        out = super()._log_weight(tensordict, adv_shape)
        self._seen["log_weight"] = out[0]
        self._seen["old_log_prob"] = tensordict.get(self.tensor_keys.sample_log_prob)
        self._seen["mask"] = self._valid_mask(tensordict, adv_shape)
        return out

    def forward(self, tensordict):
        self._seen = {}
        td_out = super().forward(tensordict)
        seen = self._take_seen("advantage", "log_weight", "old_log_prob", "mask")
        log_weight = seen["log_weight"].squeeze(-1)  # log p - log p_old, with the graph of log p
        old_log_prob = seen["old_log_prob"].detach().reshape(log_weight.shape)
        pg = symmetric_ppo_loss(
            log_weight + old_log_prob, old_log_prob, seen["advantage"].reshape(log_weight.shape),
            clip_range=float(self.clip_epsilon), alpha=self.alpha, beta=self.beta, z=self.z,
            variant=self.variant, reverse_mask=self.reverse_mask, mask=seen["mask"],
        )
        td_out.set("active_fraction", pg.active_fraction)
        return self._add_reverse(td_out, pg.reverse_loss)


class SymmetricA2CLoss(_Symmetric, A2CLoss):
    """TorchRL ``A2CLoss`` plus ``loss_reverse = beta * L_rA2C`` (SPEC 1); ``loss_objective`` is times ``alpha``.

    Args:
        alpha: weight of the policy-gradient loss (``loss_objective``).
        beta: weight of the reverse A2C loss ``-z * mean(A * (1 - p))``.
        z: "log 0" of the reverse cross entropy, negative (-1 in every published run).
        variant: ``"rce"`` (the paper) or ``"mae"``.
        **kwargs: every argument of ``A2CLoss``.
    """

    def __init__(self, actor_network=None, critic_network=None, *, alpha: float = 0.5, beta: float = 1.0,
                 z: float = -1.0, variant: str = "rce", **kwargs: Any):
        super().__init__(actor_network, critic_network, **kwargs)
        self._init_symmetric(actor_network, alpha, beta, z, variant)

    @property
    def out_keys(self):
        if self._out_keys is None:
            self._out_keys = [*A2CLoss.out_keys.fget(self), "loss_reverse"]
        return self._out_keys

    @out_keys.setter
    def out_keys(self, values):
        self._out_keys = values

    # Called once by the parent's forward, after the advantage is in the tensordict.
    def _log_probs(self, tensordict):
        log_prob, dist = super()._log_probs(tensordict)
        advantage = tensordict.get(self.tensor_keys.advantage)
        if self.advantage_norm is not None:  # the parent divides by the same scale
            advantage = advantage / self.advantage_norm.scale()
        self._seen = {"log_prob": log_prob, "advantage": advantage,
                      "mask": self._valid_mask(tensordict, log_prob.shape[:-1])}
        return log_prob, dist

    def forward(self, tensordict):
        self._seen = {}
        td_out = super().forward(tensordict)
        seen = self._take_seen("log_prob", "advantage", "mask")
        log_prob = seen["log_prob"].squeeze(-1)
        pg = symmetric_a2c_loss(
            log_prob, seen["advantage"].reshape(log_prob.shape), alpha=self.alpha, beta=self.beta, z=self.z,
            variant=self.variant, mask=seen["mask"],
        )
        return self._add_reverse(td_out, pg.reverse_loss)
