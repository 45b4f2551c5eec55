"""Rewards on decoded text: a Hugging Face sequence classifier (its own tokenizer) or any Python callable,
and seeded reward noise for robustness studies (a flipped or Gaussian-perturbed score; for pass/fail verifiers,
false positives and false negatives with stated probabilities).

A reward function takes ``(prompts, responses)`` (lists of strings) and returns one float per pair. The
reward model never sees the policy's tokens, so the two may use different tokenizers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..errors import SymrlError
from ..noise import parse as parse_noise

RewardFn = Callable[[Sequence[str], Sequence[str]], Sequence[float]]


class ClassifierReward:
    """The probability a sequence classifier gives ``label`` for ``prompt + response`` (SPEC 5: the positive
    class of ``lvwerra/distilbert-imdb``); a one-output model (a preference reward model) gives its logit."""

    def __init__(self, model: torch.nn.Module, tokenizer, label: int | str = 1, batch_size: int = 32, max_length: int = 512):
        self.model, self.tokenizer = model.eval(), tokenizer
        labels = getattr(model.config, "label2id", None) or {}
        if isinstance(label, str) and label not in labels and label.isdigit():
            label = int(label)  # an index, e.g. --set reward_label=1
        if isinstance(label, str):
            if label not in labels:
                raise SymrlError(f"the reward model has no label {label!r}; its labels are {sorted(labels)}: choose one "
                                 "with --set reward_label=NAME (or its index)")
            label = int(labels[label])
        if model.config.num_labels == 1:
            label = 0
        if not 0 <= label < model.config.num_labels:
            raise SymrlError(f"label {label} is out of range for a reward model with {model.config.num_labels} labels")
        self.label, self.batch_size, self.max_length = label, batch_size, max_length

    @classmethod
    def from_pretrained(cls, name_or_path: str, label: int | str = 1, device: str = "cpu", **kwargs) -> "ClassifierReward":
        """Load a classifier and its tokenizer (a hub name, a local folder or a LoRA adapter folder); a one-line
        error if it cannot be loaded."""
        from .hub import load_classifier  # noqa: PLC0415

        model, tokenizer = load_classifier(name_or_path, torch.device(device))
        return cls(model, tokenizer, label, **kwargs)

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        texts = [p + r for p, r in zip(prompts, responses, strict=True)]
        device = next(self.model.parameters()).device
        scores: list[float] = []
        for start in range(0, len(texts), self.batch_size):
            encoded = self.tokenizer(texts[start: start + self.batch_size], return_tensors="pt", padding=True,
                                     truncation=True, max_length=self.max_length).to(device)
            logits = self.model(**encoded).logits.float()
            scores.extend((logits[:, 0] if logits.shape[-1] == 1 else logits.softmax(-1)[:, self.label]).tolist())
        return scores


REWARD_NOISE_KINDS = ("flip", "gaussian", "verifier")
_EXPECTED = "flip:P | gaussian:SIGMA | verifier:P | verifier:FP/FN"


@dataclass(frozen=True)
class VerifierNoiseSpec:
    """Verifier noise (SPEC 5.1): a wrong response (score 0) is scored right with probability ``false_positive``,
    a right one (score 1) wrong with probability ``false_negative``."""

    false_positive: float
    false_negative: float
    kind: str = "verifier"

    def __str__(self) -> str:
        if self.false_positive == self.false_negative:
            return f"verifier:{self.false_positive:g}"
        return f"verifier:{self.false_positive:g}/{self.false_negative:g}"


def _parse_verifier(spec: str, raw: str) -> VerifierNoiseSpec:
    parts = raw.split("/")
    if len(parts) > 2:
        raise SymrlError(f"malformed reward_noise {spec!r}; expected verifier:P or verifier:FP/FN (e.g. verifier:0.1/0.2)")
    values = []
    for part in parts:
        try:
            value = float(part)
        except ValueError:
            raise SymrlError(f"malformed reward_noise {spec!r}: {part.strip()!r} is not a number; expected verifier:P or "
                             "verifier:FP/FN (e.g. verifier:0.1/0.2)") from None
        if not 0.0 <= value <= 1.0:  # NaN fails too
            raise SymrlError(f"malformed reward_noise {spec!r}: {part.strip()} is not a probability; false-positive and "
                             "false-negative rates must lie in [0, 1] (e.g. verifier:0.1/0.2)")
        values.append(value)
    return VerifierNoiseSpec(values[0], values[-1])


def parse_reward_noise(spec: Optional[str]):
    """``flip:P``, ``gaussian:SIGMA``, ``verifier:P`` or ``verifier:FP/FN`` (or None) -> a
    :class:`symrl.noise.NoiseSpec` (flip, gaussian) or a :class:`VerifierNoiseSpec`."""
    if spec is None or str(spec).strip().lower() in ("", "none", "null"):
        return None
    kind, sep, raw = str(spec).partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in REWARD_NOISE_KINDS:
        raise SymrlError(f"malformed reward_noise {spec!r}; expected {_EXPECTED} (e.g. flip:0.1)")
    if kind == "verifier":
        return _parse_verifier(str(spec), raw)
    return parse_noise(spec, "reward_noise", ("flip", "gaussian"))


class NoisyReward:
    """Reward noise: with probability ``flip`` the centred score changes sign (``c - (s - c)``), then
    ``N(0, sigma^2)`` is added. ``center`` defaults to the batch mean. Draws come from ``seed``.

    Verifier noise (``false_positive``/``false_negative`` given) instead acts on pass/fail scores: a 0 becomes 1
    with probability ``false_positive`` and a 1 becomes 0 with probability ``false_negative`` (one uniform draw
    per score); any other score is an error."""

    def __init__(self, reward_fn: RewardFn, flip: float = 0.0, sigma: float = 0.0, center: Optional[float] = None,
                 seed: int = 0, false_positive: Optional[float] = None, false_negative: Optional[float] = None):
        if not 0.0 <= flip <= 1.0 or sigma < 0:
            raise SymrlError(f"reward noise needs 0 <= flip <= 1 and sigma >= 0, got flip={flip}, sigma={sigma}")
        self.verifier = false_positive is not None or false_negative is not None
        false_positive, false_negative = false_positive or 0.0, false_negative or 0.0
        if not (0.0 <= false_positive <= 1.0 and 0.0 <= false_negative <= 1.0):
            raise SymrlError(f"verifier noise needs probabilities in [0, 1], got false_positive={false_positive}, "
                             f"false_negative={false_negative}")
        if self.verifier and (flip > 0 or sigma > 0):
            raise SymrlError("verifier noise replaces flip and gaussian noise; give one kind of reward noise")
        self.reward_fn, self.flip, self.sigma, self.center = reward_fn, flip, sigma, center
        self.false_positive, self.false_negative = false_positive, false_negative
        self.rng = np.random.default_rng(seed)

    @classmethod
    def from_spec(cls, reward_fn: RewardFn, spec, seed: int = 0) -> Optional["NoisyReward"]:
        """The noise of a ``flip:P`` / ``gaussian:SIGMA`` / ``verifier:P`` / ``verifier:FP/FN`` string or of its
        parsed spec (``RLHFConfig.reward_noise_spec``), or None for no noise."""
        parsed = parse_reward_noise(spec) if spec is None or isinstance(spec, str) else spec
        if parsed is None:
            return None
        if parsed.kind == "verifier":
            return cls(reward_fn, false_positive=parsed.false_positive, false_negative=parsed.false_negative, seed=seed)
        return cls(reward_fn, **({"flip": parsed.value} if parsed.kind == "flip" else {"sigma": parsed.value}), seed=seed)

    def perturb(self, scores: Sequence[float]) -> np.ndarray:
        """The noisy version of clean ``scores``."""
        scores = np.asarray(scores, dtype=np.float64)
        if self.verifier:
            return self._verifier_noise(scores)
        center = scores.mean() if self.center is None else self.center
        flipped = self.rng.random(len(scores)) < self.flip
        scores = np.where(flipped, 2 * center - scores, scores)
        if self.sigma > 0:
            scores = scores + self.rng.normal(0.0, self.sigma, len(scores))
        return scores

    def _verifier_noise(self, scores: np.ndarray) -> np.ndarray:
        passed, failed = scores == 1.0, scores == 0.0
        if not (passed | failed).all():
            bad = scores[~(passed | failed)][0]
            raise SymrlError(f"verifier noise needs pass/fail scores of 0 or 1, but the reward gave {bad:g}; use it with "
                             "a verifier (an exact check), or flip:P / gaussian:SIGMA for a graded reward")
        draws = self.rng.random(len(scores))
        return np.where(passed, (draws >= self.false_negative).astype(np.float64),
                        (draws < self.false_positive).astype(np.float64))

    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        return self.perturb(self.reward_fn(prompts, responses)).tolist()
