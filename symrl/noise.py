"""Training-time noise of SPEC section 3: reward flip / Gaussian / uniform, and advantage flip.

Specs are strings ``kind:value``: ``gaussian:SIGMA``, ``uniform:V``, ``flip:P`` for rewards and
``flip:P`` for advantages. Draws come from a NumPy generator seeded by the run's seed, whose state is
saved in checkpoints, so noisy runs are reproducible. Evaluation never sees noise.

Where each acts in the reward pipeline (raw reward -> sign clip (Atari) -> flip -> normalisation ->
Gaussian/uniform): the flip ``r <- 1 - r`` is defined on sign-clipped Atari rewards (so -1 becomes 2),
and the Gaussian noise is added to the *normalised* reward, as in the authors' code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np

from .errors import SymrlError

if TYPE_CHECKING:
    import torch

REWARD_KINDS = ("gaussian", "uniform", "flip")


@dataclass(frozen=True)
class NoiseSpec:
    kind: str
    value: float

    def __str__(self) -> str:
        return f"{self.kind}:{self.value:g}"


def parse(spec: Optional[str], option: str, kinds: tuple) -> Optional[NoiseSpec]:
    """``kind:value`` with ``kind`` in ``kinds`` (or None / "none") -> :class:`NoiseSpec`; ``option`` names the
    setting in errors."""
    if spec is None or str(spec).strip().lower() in ("", "none", "null"):
        return None
    kind, sep, raw = str(spec).partition(":")
    kind = kind.strip().lower()
    example = " | ".join(f"{k}:{'P' if k == 'flip' else 'X'}" for k in kinds)
    if not sep or kind not in kinds:
        raise SymrlError(f"malformed {option} {spec!r}; expected {example} (e.g. {kinds[0]}:0.1)")
    try:
        value = float(raw)
    except ValueError:
        raise SymrlError(f"malformed {option} {spec!r}: {raw!r} is not a number; expected e.g. {kind}:0.1") from None
    if not np.isfinite(value) or value < 0 or (kind == "flip" and value > 1):
        bound = "a probability in [0, 1]" if kind == "flip" else "a non-negative number"
        raise SymrlError(f"malformed {option} {spec!r}: the value must be {bound}")
    return NoiseSpec(kind, value)


def parse_reward_noise(spec: Optional[str]) -> Optional[NoiseSpec]:
    """``gaussian:SIGMA | uniform:V | flip:P`` (or None) -> :class:`NoiseSpec`."""
    return parse(spec, "--reward-noise", REWARD_KINDS)


def parse_adv_noise(spec: Optional[str]) -> Optional[NoiseSpec]:
    """``flip:P`` (or None) -> :class:`NoiseSpec`."""
    return parse(spec, "--adv-noise", ("flip",))


class RewardNoise:
    """Applies a reward-noise spec to batches of training rewards, in two stages."""

    def __init__(self, spec: Optional[NoiseSpec], rng: np.random.Generator):
        self.spec = spec
        self.rng = rng

    def before_normalization(self, rewards: np.ndarray) -> np.ndarray:
        """Flip: with probability p, r <- 1 - r (on sign-clipped rewards for Atari)."""
        if self.spec is None or self.spec.kind != "flip":
            return rewards
        flips = self.rng.random(rewards.shape) < self.spec.value
        return np.where(flips, 1.0 - rewards, rewards)

    def after_normalization(self, rewards: np.ndarray) -> np.ndarray:
        """Gaussian N(0, sigma^2) or uniform U(-v, v), added to the normalised reward."""
        if self.spec is None or self.spec.kind == "flip":
            return rewards
        if self.spec.kind == "gaussian":
            return rewards + self.rng.normal(0.0, self.spec.value, rewards.shape)
        return rewards + self.rng.uniform(-self.spec.value, self.spec.value, rewards.shape)


class AdvantageNoise:
    """Advantage flip: with probability p, A <- -A (before any normalisation)."""

    def __init__(self, spec: Optional[NoiseSpec], rng: np.random.Generator):
        self.spec = spec
        self.rng = rng

    def __call__(self, advantages: "torch.Tensor") -> "torch.Tensor":
        if self.spec is None:
            return advantages
        import torch  # noqa: PLC0415 (the specs above are read without torch, by the config)

        flips = torch.from_numpy(self.rng.random(tuple(advantages.shape)) < self.spec.value)
        return torch.where(flips.to(advantages.device), -advantages, advantages)
