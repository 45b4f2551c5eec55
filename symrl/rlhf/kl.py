"""KL penalty coefficients: fixed, or adaptive towards a target KL (Ziegler et al. 2019)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FixedKL:
    value: float

    def update(self, kl: float, n_steps: int) -> None:
        """A fixed coefficient ignores the observed KL."""


@dataclass
class AdaptiveKL:
    """``kl_coef <- kl_coef * (1 + clip(kl / target - 1, -0.2, 0.2) * n_steps / horizon)`` (Ziegler et al. call the
    coefficient beta; symrl's beta is the reverse term's weight)."""

    value: float
    target: float
    horizon: int = 10_000

    def update(self, kl: float, n_steps: int) -> None:
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon


def kl_controller(coef: float, target: float | None, horizon: int) -> FixedKL | AdaptiveKL:
    return FixedKL(coef) if target is None else AdaptiveKL(coef, target, horizon)
