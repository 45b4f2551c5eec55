"""The update composition that the torch path (:mod:`symrl.algos`) and the NumPy engine (:mod:`symrl.fast`) share.

An update step is the same in both: the settings below, read once from the config; epochs of shuffled minibatches
(:func:`minibatches`, the same ``torch.randperm`` order); advantages normalised per minibatch, and the share whose sign
that changed (:func:`normalizes`); the policy loss of :mod:`symrl.losses` (or its closed-form twin in
:mod:`symrl.fast.losses`) with :meth:`UpdateSettings.loss_kwargs`; the total loss of :meth:`UpdateSettings.total`;
a global gradient-norm clip. Only the arithmetic differs (autograd vs written-out gradients).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import numpy as np
import torch


@dataclass(frozen=True)
class UpdateSettings:
    """Every setting that changes an update step (their defaults and meanings: :class:`symrl.Config`). Both paths
    read these and nothing else of the config (``tests/test_fast.py`` checks that each one changes both paths'
    updates alike)."""

    n_epochs: int  # PPO: passes over the rollout
    batch_size: Optional[int]  # PPO: minibatch size; None = the whole rollout
    normalize_advantage: bool  # standardise advantages per minibatch (PPO: minibatches of 2 or more)
    alpha: float  # weight of the RL (A2C/PPO) policy loss
    beta: float  # weight of the reverse (RCE) policy loss
    z: float  # the reverse cross entropy's log 0
    loss_variant: str  # the reverse term: rce or mae
    reverse_mask: str  # PPO: the authors' mask on the reverse term, or none
    per_dim_reverse: bool  # factorised actions: the reverse term per action dimension
    policy_coef: float  # multiplies the whole policy loss (the rescaled control)
    vf_coef: float  # weight of the value loss (MSE)
    ent_coef: float  # weight of the entropy bonus
    max_grad_norm: float  # global gradient-norm clip
    clip_range_vf: Optional[float]  # PPO: clip the value change (None: plain MSE)

    @classmethod
    def of(cls, source: Any) -> "UpdateSettings":
        """The settings of a :class:`symrl.Config` (or anything with these fields; an ``UpdateSettings`` is kept)."""
        if isinstance(source, cls):
            return source
        return cls(**{f.name: getattr(source, f.name) for f in dataclasses.fields(cls)})

    def loss_kwargs(self) -> dict:
        """The keyword arguments of :func:`symrl.losses.symmetric_a2c_loss` (PPO adds ``reverse_mask``)."""
        return dict(alpha=self.alpha, beta=self.beta, z=self.z, variant=self.loss_variant,
                    per_dim_reverse=self.per_dim_reverse)

    def total(self, policy_loss, value_loss, entropy):
        """The loss one step descends: ``policy_coef * policy + vf_coef * value - ent_coef * entropy`` (tensors or
        floats)."""
        return self.policy_coef * policy_loss + self.vf_coef * value_loss - self.ent_coef * entropy

    def normalizes(self, n: int, ppo: bool) -> bool:
        """Whether a (mini)batch of ``n`` samples has its advantages standardised: A2C always when asked; PPO only
        from 2 samples on (one sample has no spread; SB3 issue #325)."""
        return self.normalize_advantage and (not ppo or n > 1)


def minibatches(n: int, settings: UpdateSettings) -> Iterator[torch.Tensor]:
    """PPO's minibatch indices: ``n_epochs`` shuffles of ``range(n)`` (``torch.randperm``, so the torch seed decides
    the order in both paths), each cut into slices of ``batch_size`` (None: the whole rollout)."""
    batch_size = settings.batch_size or n
    for _epoch in range(settings.n_epochs):
        order = torch.randperm(n)
        for start in range(0, n, batch_size):
            yield order[start : start + batch_size]


def mean_logs(rows: list[dict]) -> dict:
    """The per-update means of the steps' logs (NaN-aware: an unnormalised minibatch logs no sign-change ratio)."""
    out = {}
    for key in rows[0]:
        values = np.asarray([row[key] for row in rows], dtype=np.float64)
        out[key] = float("nan") if np.all(np.isnan(values)) else float(np.nanmean(values))
    return out
