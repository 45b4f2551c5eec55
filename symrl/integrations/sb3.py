"""SA2C and SPPO as drop-in Stable-Baselines3 algorithms (``pip install 'symrl[sb3]'``).

``SPPO`` is ``stable_baselines3.PPO`` and ``SA2C`` is ``stable_baselines3.A2C`` with one change: the
policy loss is :func:`symrl.losses.symmetric_ppo_loss` / :func:`symrl.losses.symmetric_a2c_loss`, i.e.
``alpha * L_RL + beta * L_reverse``. Everything else (rollouts, GAE, schedules, ``target_kl``,
``clip_range_vf``, callbacks, ``VecNormalize``, ``save``/``load``, the logger) is SB3's own::

    from symrl.integrations.sb3 import SPPO
    model = SPPO("MlpPolicy", "CartPole-v1", alpha=0.5, beta=1.0, z=-1.0, seed=0).learn(50_000)

The reverse term needs action probabilities, so the action space must be Discrete or MultiDiscrete.
Continuous tasks go through :class:`DiscretizeAction` (the paper's DPPO / DSPPO), a plain Gymnasium
wrapper: ``make_vec_env("HalfCheetah-v4", wrapper_class=DiscretizeAction, wrapper_kwargs={"bins": 11})``.

Note (SPEC 1.1): with the authors' mask, SPPO's gradient is PPO's times ``alpha + beta * |z|``; compare
SPPO runs with ``SPPO(..., alpha=alpha + beta * abs(z), beta=0)``, the scaled-PPO control.

Logged besides SB3's keys: ``train/reverse_loss``, ``train/symmetric_loss`` (alpha * RL + beta * reverse),
``train/sign_change_ratio`` (share of advantages whose sign normalisation changed) and, for SPPO,
``train/active_fraction`` (share of samples where the reverse mask is 1).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from torch.nn import functional as F

try:
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.utils import explained_variance
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("symrl.integrations.sb3 needs Stable-Baselines3: pip install 'symrl[sb3]'") from exc

from ..advantages import normalize_advantages, sign_change_ratio
from ..envs.wrappers import DiscretizeAction
from ..losses import check_settings, symmetric_a2c_loss, symmetric_ppo_loss

__all__ = ["SA2C", "SPPO", "DiscretizeAction"]


def _scalar(value: th.Tensor | float) -> float:
    return float(value.detach()) if th.is_tensor(value) else float(value)


class _SymmetricLoss:
    """What SA2C and SPPO add to their SB3 parent: the loss settings, the action-space check, evaluation."""

    SUPPORTED_SPACES: ClassVar[tuple] = (spaces.Discrete, spaces.MultiDiscrete)

    def _set_symmetric(self, alpha: float, beta: float, z: float, variant: str) -> None:
        check_settings(alpha, beta, z, variant)
        self.alpha, self.beta, self.z = float(alpha), float(beta), float(z)
        self.variant = variant

    def _setup_model(self) -> None:
        # Runs from __init__ and from load(): the one place every model passes through.
        if not isinstance(self.action_space, self.SUPPORTED_SPACES):
            raise ValueError(
                f"{type(self).__name__} needs a Discrete or MultiDiscrete action space (the reverse loss uses action "
                f"probabilities), got {self.action_space}; wrap a Box env with symrl.integrations.sb3.DiscretizeAction, "
                "e.g. make_vec_env(env_id, wrapper_class=DiscretizeAction, wrapper_kwargs={'bins': 11})"
            )
        super()._setup_model()

    def _evaluate(self, obs: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
        """Values, joint log-probabilities of the taken actions (a product over MultiDiscrete dimensions), entropy."""
        if isinstance(self.action_space, spaces.Discrete):
            actions = actions.long().flatten()
        values, log_prob, entropy = self.policy.evaluate_actions(obs, actions)
        return values.flatten(), log_prob, entropy

    def _advantages(self, advantages: th.Tensor, normalize: bool) -> tuple[th.Tensor, float]:
        """The advantages the loss sees, and the sign-change ratio of that normalisation (0 without it)."""
        if not normalize:
            return advantages, 0.0
        normalized = normalize_advantages(advantages)  # SB3's formula: (A - mean) / (unbiased std + 1e-8)
        return normalized, sign_change_ratio(advantages, normalized).item()


class SPPO(_SymmetricLoss, PPO):
    """Symmetric PPO: ``stable_baselines3.PPO`` with policy loss ``alpha * L_PPO + beta * L_rPPO``.

    :param alpha: weight of PPO's clipped surrogate loss.
    :param beta: weight of the reverse PPO loss ``-z * mean(m * A * (1 - p) / p_old)``; 0 gives plain PPO
        (times ``alpha``).
    :param z: "log 0" of the reverse cross entropy, negative (-1 in every published run).
    :param variant: ``"rce"`` (the paper) or ``"mae"`` (``A * (1 - 2p)``, the authors' other variant).
    :param reverse_mask: ``"ppo"`` (the authors' mask m: active where the clipped objective has a gradient)
        or ``"none"`` (the paper's earlier, unmasked form).
    :param kwargs: every argument of ``stable_baselines3.PPO`` (``n_steps``, ``batch_size``, ``seed``, ...).
    """

    def __init__(
        self,
        policy: Any,
        env: Any,
        alpha: float = 0.5,
        beta: float = 1.0,
        z: float = -1.0,
        variant: str = "rce",
        reverse_mask: str = "ppo",
        **kwargs: Any,
    ):
        check_settings(reverse_mask=reverse_mask)
        self._set_symmetric(alpha, beta, z, variant)
        self.reverse_mask = reverse_mask
        super().__init__(policy, env, **kwargs)

    def train(self) -> None:
        """One PPO update over the rollout buffer, as ``PPO.train`` with the symmetric policy loss."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)
        clip_range_vf = self.clip_range_vf(self._current_progress_remaining) if self.clip_range_vf is not None else None

        logs: dict[str, list[float]] = {}
        approx_kl_divs: list[float] = []
        continue_training = True
        for epoch in range(self.n_epochs):
            approx_kl_divs = []
            for rollout_data in self.rollout_buffer.get(self.batch_size):
                values, log_prob, entropy = self._evaluate(rollout_data.observations, rollout_data.actions)
                # Normalisation does not make sense for a minibatch of 1 (SB3 issue #325).
                normalize = self.normalize_advantage and len(rollout_data.advantages) > 1
                advantages, sign_changed = self._advantages(rollout_data.advantages, normalize)
                pg = symmetric_ppo_loss(
                    log_prob, rollout_data.old_log_prob, advantages, clip_range=clip_range, alpha=self.alpha,
                    beta=self.beta, z=self.z, variant=self.variant, reverse_mask=self.reverse_mask,
                )
                values_pred = values
                if clip_range_vf is not None:  # clip the change of the value prediction, as SB3 does
                    old_values = rollout_data.old_values
                    values_pred = old_values + th.clamp(values - old_values, -clip_range_vf, clip_range_vf)
                value_loss = F.mse_loss(rollout_data.returns, values_pred)
                entropy_loss = th.mean(log_prob) if entropy is None else -th.mean(entropy)
                loss = pg.loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss

                for key, value in (
                    ("policy_gradient_loss", pg.rl_loss), ("reverse_loss", pg.reverse_loss), ("symmetric_loss", pg.loss),
                    ("value_loss", value_loss), ("entropy_loss", entropy_loss), ("clip_fraction", pg.clip_fraction),
                    ("active_fraction", pg.active_fraction), ("sign_change_ratio", sign_changed),
                ):
                    logs.setdefault(key, []).append(_scalar(value))
                approx_kl_div = float(pg.approx_kl)
                approx_kl_divs.append(approx_kl_div)
                if self.target_kl is not None and approx_kl_div > 1.5 * self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(f"Early stopping at step {epoch} due to reaching max kl: {approx_kl_div:.2f}")
                    break

                self.policy.optimizer.zero_grad()
                loss.backward()
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.policy.optimizer.step()

            self._n_updates += 1
            if not continue_training:
                break

        for key, values in logs.items():
            self.logger.record(f"train/{key}", np.mean(values))
        self.logger.record("train/approx_kl", np.mean(approx_kl_divs))
        self.logger.record("train/loss", loss.item())
        self.logger.record(
            "train/explained_variance",
            explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten()),
        )
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
        if clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)


class SA2C(_SymmetricLoss, A2C):
    """Symmetric A2C: ``stable_baselines3.A2C`` with policy loss ``alpha * L_A2C + beta * L_rA2C``.

    ``L_rA2C = -z * mean(A * (1 - p))``; its gradient is ``|z| * p`` times A2C's per sample (SPEC 1.1).

    :param alpha: weight of A2C's policy-gradient loss.
    :param beta: weight of the reverse A2C loss; 0 gives plain A2C (times ``alpha``).
    :param z: "log 0" of the reverse cross entropy, negative (-1 in every published run).
    :param variant: ``"rce"`` (the paper) or ``"mae"``.
    :param kwargs: every argument of ``stable_baselines3.A2C`` (``n_steps``, ``use_rms_prop``, ``seed``, ...).
    """

    def __init__(
        self,
        policy: Any,
        env: Any,
        alpha: float = 0.5,
        beta: float = 1.0,
        z: float = -1.0,
        variant: str = "rce",
        **kwargs: Any,
    ):
        self._set_symmetric(alpha, beta, z, variant)
        super().__init__(policy, env, **kwargs)

    def train(self) -> None:
        """One gradient step over the whole rollout, as ``A2C.train`` with the symmetric policy loss."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        for rollout_data in self.rollout_buffer.get(batch_size=None):  # a single batch
            values, log_prob, entropy = self._evaluate(rollout_data.observations, rollout_data.actions)
            advantages, sign_changed = self._advantages(rollout_data.advantages, self.normalize_advantage)
            pg = symmetric_a2c_loss(log_prob, advantages, alpha=self.alpha, beta=self.beta, z=self.z, variant=self.variant)
            value_loss = F.mse_loss(rollout_data.returns, values)
            entropy_loss = th.mean(log_prob) if entropy is None else -th.mean(entropy)
            loss = pg.loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss

            self.policy.optimizer.zero_grad()
            loss.backward()
            th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()

        self._n_updates += 1
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record(
            "train/explained_variance",
            explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten()),
        )
        for key, value in (
            ("entropy_loss", entropy_loss), ("policy_loss", pg.rl_loss), ("reverse_loss", pg.reverse_loss),
            ("symmetric_loss", pg.loss), ("value_loss", value_loss), ("sign_change_ratio", sign_changed),
        ):
            self.logger.record(f"train/{key}", _scalar(value))
