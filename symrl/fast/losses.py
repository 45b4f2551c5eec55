"""The symmetric losses of :mod:`symrl.losses` with their gradients in closed form, in NumPy.

These are the same formulas (SPEC section 1) differentiated by hand, for the NumPy engine; the torch
functions in :mod:`symrl.losses` stay the reference, and tests/test_fast.py checks that both give the
same values and gradients. Each function returns the loss terms (Python floats, for logging) and the
gradient of the *policy loss* ``alpha * L_RL + beta * L_rev`` with respect to the log-probabilities.

Gradients with respect to ``log p`` (per sample, before the 1/B of the mean), with ``r = p / p_old``,
``k = Z`` for rce and ``k = -2`` for mae, ``m`` the PPO mask:
- PPO:  ``-A r m``                      reverse: ``k A r m`` (``m`` = 1 everywhere for reverse_mask none)
- A2C:  ``-A``                          reverse: ``k A p``
The per-dimension reverse term replaces ``r`` (``p``) by the per-dimension ratio (probability).
"""

from __future__ import annotations

import math

import numpy as np


def _mean(x: np.ndarray) -> float:
    """Mean as a Python float through the ufunc reduction (``ndarray.mean``'s wrapper costs more than the
    arithmetic on a 64-sample minibatch, and these run ~10 times per minibatch)."""
    return float(np.add.reduce(x, axis=None)) / x.size


def _reverse_value(lp: np.ndarray, z: float, variant: str) -> np.ndarray:
    p = np.exp(lp)
    return -z * (1.0 - p) if variant == "rce" else 1.0 - 2.0 * p


INVERSE_OLD_LOG_CAP = 60.0  # as symrl.losses: exp(-log p_old) is a constant, capped so that sums stay finite


def _reverse_over_old(lp: np.ndarray, old_lp: np.ndarray, z: float, variant: str) -> tuple[np.ndarray, np.ndarray]:
    """``(reverse(p) / p_old, r)`` without overflow (see :func:`symrl.losses._reverse_over_old`)."""
    ratio = np.exp(lp - old_lp)
    inverse_old = np.exp(np.minimum(-old_lp, INVERSE_OLD_LOG_CAP))
    return (-z * (inverse_old - ratio) if variant == "rce" else inverse_old - 2.0 * ratio), ratio


def _k(z: float, variant: str) -> float:
    return z if variant == "rce" else -2.0


def ppo_loss_and_grad(log_prob, old_log_prob, adv, *, clip_range, alpha, beta, z, variant, reverse_mask, per_dim_reverse):
    """``(terms, d_policy_loss/d_log_prob)``; the gradient has log_prob's shape when the reverse term is
    per dimension, else the joint shape ``[B]``."""
    per_dim = log_prob.ndim == 2
    joint = log_prob.sum(-1) if per_dim else log_prob
    old_joint = old_log_prob.sum(-1) if per_dim else old_log_prob
    n = joint.shape[0]
    log_ratio = joint - old_joint
    ratio = np.exp(log_ratio)
    clipped = np.clip(ratio, 1.0 - clip_range, 1.0 + clip_range)
    surrogate, clipped_surrogate = ratio * adv, clipped * adv
    in_range = (ratio >= 1.0 - clip_range) & (ratio <= 1.0 + clip_range)
    active = in_range | (surrogate <= clipped_surrogate)
    rl_loss = -_mean(np.minimum(surrogate, clipped_surrogate))
    weight = adv * active if reverse_mask == "ppo" else adv
    k = _k(z, variant)
    grad_joint = (-alpha / n) * (surrogate * active)
    if per_dim_reverse and per_dim:
        reverse, dim_ratio = _reverse_over_old(log_prob, old_log_prob, z, variant)
        reverse_loss = _mean(weight * reverse.sum(-1))
        grad = (beta * k / n) * (weight[:, None] * dim_ratio) + grad_joint[:, None]
    else:
        reverse, _ = _reverse_over_old(joint, old_joint, z, variant)
        reverse_loss = _mean(weight * reverse)
        grad = grad_joint + (beta * k / n) * (weight * ratio) if beta else grad_joint
    terms = {
        "policy_loss": alpha * rl_loss + beta * reverse_loss, "rl_loss": rl_loss, "reverse_loss": reverse_loss,
        "clip_fraction": 1.0 - _mean(in_range), "approx_kl": _mean(ratio - 1.0 - log_ratio),
        "active_fraction": _mean(active),
    }
    return terms, grad


def a2c_loss_and_grad(log_prob, adv, *, alpha, beta, z, variant, per_dim_reverse):
    """As :func:`ppo_loss_and_grad` for ``alpha * L_A2C + beta * L_rA2C``."""
    per_dim = log_prob.ndim == 2
    joint = log_prob.sum(-1) if per_dim else log_prob
    n = joint.shape[0]
    rl_loss = -_mean(adv * joint)
    k = _k(z, variant)
    if per_dim_reverse and per_dim:
        reverse_loss = _mean(adv * _reverse_value(log_prob, z, variant).sum(-1))
        grad = (beta * k / n) * (adv[:, None] * np.exp(log_prob)) + ((-alpha / n) * adv)[:, None]
    else:
        reverse_loss = _mean(adv * _reverse_value(joint, z, variant))
        grad = (-alpha / n) * adv + (beta * k / n) * (adv * np.exp(joint))
    return {"policy_loss": alpha * rl_loss + beta * reverse_loss, "rl_loss": rl_loss, "reverse_loss": reverse_loss}, grad


def value_loss_and_grad(values, old_values, returns, clip):
    """MSE to the returns, or PPO's clipped value loss; gradient as torch's max/clamp give it
    (ties split in half)."""
    n = values.shape[0]
    err = returns - values
    if clip is None:
        return _mean(err * err), (-2.0 / n) * err
    delta = values - old_values
    clipped = old_values + np.clip(delta, -clip, clip)
    err_c = returns - clipped
    l1, l2 = err * err, err_c * err_c
    inside = (delta >= -clip) & (delta <= clip)
    w1 = np.where(l1 > l2, 1.0, np.where(l1 == l2, 0.5, 0.0)).astype(values.dtype)
    w2 = np.where(l2 > l1, 1.0, np.where(l1 == l2, 0.5, 0.0)).astype(values.dtype) * inside
    return _mean(np.maximum(l1, l2)), (-2.0 / n) * (w1 * err + w2 * err_c)


def normalize(adv: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """``(A - mean) / (std + eps)`` with the unbiased std, as :func:`symrl.advantages.normalize_advantages`."""
    centred = adv - _mean(adv)
    if adv.shape[0] < 2:
        return centred
    return centred / (math.sqrt(_mean(centred * centred) * adv.shape[0] / (adv.shape[0] - 1)) + eps)
