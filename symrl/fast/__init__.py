"""The NumPy engine: the same PPO/A2C updates as :mod:`symrl.algos` for MLP policies on the CPU,
several times faster at the small sizes of control tasks (see benchmarks/RESULTS.md).

``engine: auto`` (the default) uses it whenever :func:`symrl.fast.mlp.supports` allows, ``engine: torch``
never. It changes the speed, not the algorithm: tests/test_fast.py checks that one update gives the same
parameters as the torch path on the same data, for every head, loss variant and optimiser. A run that holds 2 or more
cores with PPO minibatches of :data:`WORKER_ROWS` rows or more runs a separate critic's passes in a worker process
(:mod:`symrl.fast.critic`), bit for bit as in one.
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
from .critic import FORK, CriticWorker, ValueLoss
from .losses import _mean, a2c_loss_and_grad, normalize, ppo_loss_and_grad
from .mlp import NumpyActorCritic, flatten_parameters, is_flat, supports
from .optim import FlatOptimizer

__all__ = ["NumpyEngine", "make_engine", "supports"]

# smaller minibatches keep the critic in this process: handing it over costs more than it saves
WORKER_ROWS = 1024


class NumpyEngine:
    """Acting and updating an MLP :class:`ActorCritic` in place through NumPy views of its parameters."""

    def __init__(self, policy: ActorCritic, optimizer: torch.optim.Optimizer, rng: np.random.Generator,
                 critic_rows: int = 0):
        """``critic_rows`` > 0 (a separate critic only): run the critic's passes in a worker process, for updates of
        up to that many rows (:class:`~symrl.fast.critic.CriticWorker`, started here)."""
        reason = supports(policy)
        if reason:  # checked before flattening, which would otherwise re-allocate the parameters in vain
            raise ValueError(reason)
        self.policy = policy
        self.flat = flatten_parameters(policy)
        beside = critic_rows > 0 and not policy.shared  # a separate critic's passes in a worker process
        if beside:  # the worker reads the parameters and writes the gradients through shared memory
            self.flat.share_memory_()  # before any NumPy view of them is made
        self.net = NumpyActorCritic(policy, self.flat, shared_grad=beside)
        self.critic = CriticWorker(self.net, critic_rows, self.net.actor[0][0].shape[1]) if beside else None
        self.params = list(policy.parameters())
        self.opt = FlatOptimizer(optimizer, self.flat, self.params)
        self.rng = rng
        self._fused_at = -1

    def check(self) -> None:
        """Fail loudly if someone re-allocated the parameters behind the engine's back."""
        if not is_flat(self.params, self.flat):
            raise RuntimeError("the policy's parameters were re-allocated; build a new NumpyEngine")

    def close(self) -> None:
        """Stop the critic's worker process, if any."""
        if self.critic is not None:
            self.critic.close()

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
              clip_range: Optional[float], cols: Optional[np.ndarray], critic: Optional[CriticWorker] = None) -> dict:
        """One gradient step on a minibatch: its rows of the rollout's arrays, the observations as
        :meth:`~symrl.fast.mlp.NumpyActorCritic.training_inputs` gave them (``inputs``, ``cols``); ``critic``: the
        critic's passes on it already started in the worker process."""
        s = UpdateSettings.of(s)
        with np.errstate(over="ignore", invalid="ignore"):  # a non-finite loss is caught below
            return self._step_unguarded(inputs, actions, old_log_prob, old_values, advantages, returns, s, clip_range,
                                        cols, critic)

    def _step_unguarded(self, inputs, actions, old_log_prob, old_values, advantages, returns, s: UpdateSettings,
                        clip_range: Optional[float], cols: Optional[np.ndarray], critic: Optional[CriticWorker]) -> dict:
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

        value_loss = ValueLoss(old_values, returns, self._value_clip(s, clip_range), s.vf_coef)  # and the value loss's
        (terms, log_prob, entropy), v_loss = self.net.train_passes(inputs, cols, actions, policy_loss, value_loss,
                                                                   critic)
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
        critic = self.critic  # make_engine starts one only for minibatches of WORKER_ROWS rows or more
        if critic is not None and len(batch) > critic.rows:
            raise SymrlError(f"a batch of {len(batch)} rows is larger than the critic worker's {critic.rows}; build the "
                             "engine with critic_rows for it")
        if critic is not None:  # the update's data for the critic's worker process
            critic.load(arrays[0], cols, arrays[3], arrays[5], self._value_clip(s, clip_range), s.vf_coef)
        rows = []
        for index in minibatches(len(batch), s):
            rows_of = index.numpy()
            # started after the previous step's parameter update, which the worker reads through shared memory
            started = critic.start(rows_of) if critic is not None else None
            rows.append(self._step(*(a[rows_of] for a in arrays), s, clip_range, cols, started))
        return mean_logs(rows)

    @staticmethod
    def _value_clip(s: UpdateSettings, clip_range: Optional[float]) -> Optional[float]:
        """PPO's value clipping; A2C has none."""
        return None if clip_range is None else s.clip_range_vf

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
                rng: np.random.Generator, cores: int = 1) -> Optional[NumpyEngine]:
    """The NumPy engine when ``cfg.engine`` allows it and the policy is supported, else ``None``; ``cores``: the cores
    the run holds. With 2 or more, PPO minibatches of :data:`WORKER_ROWS` rows or more and a separate critic, the
    critic's passes run in a worker process beside the actor's."""
    if cfg.engine == "torch" or cfg.precision != "fp32":  # the NumPy engine computes in float32 only
        return None
    rows = cfg.n_steps * cfg.n_envs
    beside = FORK and cores >= 2 and cfg.family == "ppo" and (cfg.batch_size or rows) >= WORKER_ROWS
    try:
        return NumpyEngine(policy, optimizer, rng, critic_rows=rows if beside else 0)
    except ValueError as exc:
        reason = str(exc)
    if cfg.engine == "numpy":
        raise SymrlError(f"engine=numpy cannot run this policy ({reason}); use engine=auto or engine=torch")
    return None
