"""The NumPy engine: the same PPO/A2C updates as :mod:`symrl.algos` for MLP policies on the CPU,
several times faster at the small sizes of control tasks (see benchmarks/RESULTS.md).

``engine: auto`` (the default) uses it whenever :func:`symrl.fast.mlp.supports` allows, ``engine: torch``
never. It changes the speed, not the algorithm: tests/test_fast.py checks that one update gives the same
parameters as the torch path on the same data, for every head, loss variant and optimiser.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..algos.common import Batch
from ..algos.update import UpdateSettings, mean_logs, minibatches
from ..config import Config
from ..errors import SymrlError, TrainingDiverged
from ..policies import ActorCritic
from .losses import _mean, a2c_loss_and_grad, normalize, ppo_loss_and_grad, value_loss_and_grad
from .mlp import NumpyActorCritic, flatten_parameters, is_flat, supports
from .optim import FlatOptimizer

__all__ = ["NumpyEngine", "make_engine", "supports"]


class NumpyEngine:
    """Acting and updating an MLP :class:`ActorCritic` in place through NumPy views of its parameters."""

    def __init__(self, policy: ActorCritic, optimizer: torch.optim.Optimizer, rng: np.random.Generator, threads: int = 1):
        reason = supports(policy)
        if reason:  # checked before flattening, which would otherwise re-allocate the parameters in vain
            raise ValueError(reason)
        self.policy = policy
        self.flat = flatten_parameters(policy)
        self.net = NumpyActorCritic(policy, self.flat)
        self.net.use_threads(threads)
        self.params = list(policy.parameters())
        self.opt = FlatOptimizer(optimizer, self.flat, self.params)
        self.rng = rng
        self._fused_at = -1

    def check(self) -> None:
        """Fail loudly if someone re-allocated the parameters behind the engine's back."""
        if not is_flat(self.params, self.flat):
            raise RuntimeError("the policy's parameters were re-allocated; build a new NumpyEngine")

    def close(self) -> None:
        """Stop the update's second thread, if any."""
        self.net.close()

    def sync(self) -> None:
        """Bring the torch optimiser's state up to date (its step counter); call before saving it."""
        self.opt.sync()

    # -- acting ----------------------------------------------------------------------------------------
    def act(self, obs: np.ndarray, deterministic: bool = False):
        if self._fused_at != self.opt.step_count:  # parameters changed since the acting network was built
            self.net.fuse()
            self._fused_at = self.opt.step_count
        return self.net.act(obs, self.rng, deterministic)

    def value(self, obs: np.ndarray) -> np.ndarray:
        return self.net.value(obs)

    # -- updates (the composition of symrl.algos.update, as the torch path) ---------------------------------
    def _step(self, inputs, actions, old_log_prob, old_values, advantages, returns, s: UpdateSettings,
              clip_range: Optional[float], cols: Optional[np.ndarray]) -> dict:
        """One gradient step on a minibatch: its rows of the rollout's arrays, the observations as
        :meth:`~symrl.fast.mlp.NumpyActorCritic.training_inputs` gave them (``inputs``, ``cols``)."""
        s = UpdateSettings.of(s)
        with np.errstate(over="ignore", invalid="ignore"):  # a non-finite loss is caught below
            return self._step_unguarded(inputs, actions, old_log_prob, old_values, advantages, returns, s, clip_range,
                                        cols)

    def _step_unguarded(self, inputs, actions, old_log_prob, old_values, advantages, returns, s: UpdateSettings,
                        clip_range: Optional[float], cols: Optional[np.ndarray]) -> dict:
        sign_changed = float("nan")
        if s.normalizes(advantages.shape[0], ppo=clip_range is not None):
            normalized = normalize(advantages)
            sign_changed = _mean(np.sign(advantages) != np.sign(normalized))
            advantages = normalized
        n = inputs.shape[0]

        def policy_loss(log_prob, entropy):  # the gradient of s.total, term by term: the policy's and the entropy's
            if clip_range is None:
                terms, d_log_prob = a2c_loss_and_grad(log_prob, advantages, **s.loss_kwargs())
            else:
                terms, d_log_prob = ppo_loss_and_grad(log_prob, old_log_prob, advantages, clip_range=clip_range,
                                                      reverse_mask=s.reverse_mask, **s.loss_kwargs())
            return (terms, log_prob, entropy), d_log_prob * s.policy_coef, np.full(n, -s.ent_coef / n, np.float32)

        def value_loss(values):  # and the value loss's
            v_loss, d_value = value_loss_and_grad(values, old_values, returns,
                                                  None if clip_range is None else s.clip_range_vf)
            return v_loss, d_value * s.vf_coef

        (terms, log_prob, entropy), v_loss = self.net.train_passes(inputs, cols, actions, policy_loss, value_loss)
        entropy_mean = _mean(entropy)
        loss = s.total(terms["policy_loss"], v_loss, entropy_mean)
        if not np.isfinite(loss):
            raise TrainingDiverged(
                f"the loss became {loss} (non-finite); training stopped and the last checkpoint (if one was written) is kept. "
                "Lower learning_rate or check the reward scale"
            )
        grad_norm = self.opt.step(self.net.grad, s.max_grad_norm)
        joint = log_prob.sum(-1) if log_prob.ndim > 1 else log_prob  # as algos.common.mean_action_prob
        return {"loss": loss, **terms, "value_loss": v_loss, "entropy": entropy_mean,
                "sign_change_ratio": sign_changed, "grad_norm": grad_norm, "action_prob": _mean(np.exp(joint))}

    def ppo_update(self, batch: Batch, settings: UpdateSettings, clip_range: float) -> dict:
        """As :func:`symrl.algos.ppo_update` (the same minibatches: :func:`~symrl.algos.update.minibatches`)."""
        self.check()
        s = UpdateSettings.of(settings)
        arrays, cols = self._arrays(batch)
        rows = [self._step(*(a[index.numpy()] for a in arrays), s, clip_range, cols)
                for index in minibatches(len(batch), s)]
        return mean_logs(rows)

    def _arrays(self, batch: Batch) -> tuple[list, Optional[np.ndarray]]:
        """The batch's fields as NumPy arrays, the observations as the first layer takes them, and their columns
        (:meth:`~symrl.fast.mlp.NumpyActorCritic.training_inputs`)."""
        arrays = [getattr(batch, name).numpy() for name in Batch.__dataclass_fields__]
        arrays[0], cols = self.net.training_inputs(arrays[0])
        return arrays, cols

    def a2c_update(self, batch: Batch, settings: UpdateSettings) -> dict:
        """As :func:`symrl.algos.a2c_update`: one step on the whole rollout."""
        self.check()
        arrays, cols = self._arrays(batch)
        row = self._step(*arrays, UpdateSettings.of(settings), None, cols)
        for key in ("clip_fraction", "approx_kl", "active_fraction"):
            row.pop(key, None)
        return row


def make_engine(cfg: Config, policy: ActorCritic, optimizer: torch.optim.Optimizer,
                rng: np.random.Generator, threads: int = 1) -> Optional[NumpyEngine]:
    """The NumPy engine when ``cfg.engine`` allows it and the policy is supported, else ``None``; ``threads``: the
    cores the run holds (2 or more: a separate critic's passes run on a second thread)."""
    if cfg.engine == "torch" or cfg.precision != "fp32":  # the NumPy engine computes in float32 only
        return None
    try:
        return NumpyEngine(policy, optimizer, rng, threads)
    except ValueError as exc:
        reason = str(exc)
    if cfg.engine == "numpy":
        raise SymrlError(f"engine=numpy cannot run this policy ({reason}); use engine=auto or engine=torch")
    return None
