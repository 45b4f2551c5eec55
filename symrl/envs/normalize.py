"""Observation and reward normalisation with running statistics (as SB3's VecNormalize).

Kept outside the environments so the same statistics normalise the final observation of a truncated
episode (for bootstrapping), are saved with the model, and are applied frozen at evaluation.
"""

from __future__ import annotations

import numpy as np
import torch


class RunningMeanStd:
    """Running mean and variance over batches (parallel algorithm of Chan et al.)."""

    def __init__(self, shape: tuple = (), epsilon: float = 1e-4):
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = epsilon

    def update(self, batch: np.ndarray) -> None:
        n = batch.shape[0]
        if n == 1:  # one environment: skip the reductions, which cost more than the arithmetic here
            delta = batch[0] - self.mean
            batch_m2 = 0.0
        else:
            batch_mean = np.add.reduce(batch, 0, dtype=np.float64) / n
            centred = batch - batch_mean
            delta = batch_mean - self.mean
            batch_m2 = np.add.reduce(centred * centred, 0)
        total = self.count + n
        self.mean = self.mean + delta * (n / total)
        self.var = (self.var * self.count + batch_m2 + delta * delta * (self.count * n / total)) / total
        self.count = total

    def state_dict(self) -> dict:
        """Tensors, so checkpoints load with ``torch.load(weights_only=True)``."""
        return {"mean": torch.tensor(np.asarray(self.mean)), "var": torch.tensor(np.asarray(self.var)),
                "count": float(self.count)}

    def load_state_dict(self, state: dict) -> None:
        self.mean = np.asarray(state["mean"], np.float64)
        self.var = np.asarray(state["var"], np.float64)
        self.count = float(state["count"])


class ObsNormalizer:
    """``clip((obs - mean) / sqrt(var + eps), -clip, clip)``; identity when disabled."""

    def __init__(self, shape: tuple, enabled: bool, clip: float = 10.0, eps: float = 1e-8):
        self.enabled, self.clip, self.eps = enabled, clip, eps
        self.rms = RunningMeanStd(shape)

    def update(self, obs: np.ndarray) -> None:
        if self.enabled:
            self.rms.update(obs)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        if not self.enabled:
            return obs
        out = obs - self.rms.mean
        out /= np.sqrt(self.rms.var + self.eps)
        return _clip(out, self.clip).astype(np.float32)

    def state_dict(self) -> dict:
        return self.rms.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.rms.load_state_dict(state)


class RewardScaler:
    """Divide rewards by the running std of the discounted return (SB3 VecNormalize's reward scaling)."""

    def __init__(self, n_envs: int, gamma: float, enabled: bool, clip: float = 10.0, eps: float = 1e-8):
        self.enabled, self.gamma, self.clip, self.eps = enabled, gamma, clip, eps
        self.rms = RunningMeanStd(())
        self.returns = np.zeros(n_envs, np.float64)

    def __call__(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        """Update the statistics with this step and return the scaled rewards."""
        if not self.enabled:
            return rewards
        self.returns = self.returns * self.gamma + rewards
        self.rms.update(self.returns)
        scaled = _clip(rewards / np.sqrt(self.rms.var + self.eps), self.clip)
        self.returns[dones] = 0.0
        return scaled

    def state_dict(self) -> dict:
        return self.rms.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.rms.load_state_dict(state)


def _clip(x: np.ndarray, bound: float) -> np.ndarray:
    """``np.clip(x, -bound, bound)`` in place, through the ufuncs (np.clip's wrapper costs more than the
    arithmetic at one environment per step)."""
    np.maximum(x, -bound, out=x)
    return np.minimum(x, bound, out=x)
