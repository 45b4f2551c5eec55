"""Rewards on decoded text: a Hugging Face sequence classifier (its own tokenizer) or any Python callable,
and seeded reward noise for robustness studies.

A reward function takes ``(prompts, responses)`` (lists of strings) and returns one float per pair. The
reward model never sees the policy's tokens, so the two may use different tokenizers.
"""

from __future__ import annotations

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


def parse_reward_noise(spec: Optional[str]):
    """``flip:P`` or ``gaussian:SIGMA`` (or None) -> :class:`symrl.noise.NoiseSpec`."""
    return parse_noise(spec, "reward_noise", ("flip", "gaussian"))


class NoisyReward:
    """Reward noise: with probability ``flip`` the centred score changes sign (``c - (s - c)``), then
    ``N(0, sigma^2)`` is added. ``center`` defaults to the batch mean. Draws come from ``seed``."""

    def __init__(self, reward_fn: RewardFn, flip: float = 0.0, sigma: float = 0.0, center: Optional[float] = None,
                 seed: int = 0):
        if not 0.0 <= flip <= 1.0 or sigma < 0:
            raise SymrlError(f"reward noise needs 0 <= flip <= 1 and sigma >= 0, got flip={flip}, sigma={sigma}")
        self.reward_fn, self.flip, self.sigma, self.center = reward_fn, flip, sigma, center
        self.rng = np.random.default_rng(seed)

    @classmethod
    def from_spec(cls, reward_fn: RewardFn, spec: Optional[str], seed: int = 0) -> Optional["NoisyReward"]:
        """The noise of a ``flip:P`` / ``gaussian:SIGMA`` string, or None for no noise."""
        parsed = parse_reward_noise(spec)
        if parsed is None:
            return None
        return cls(reward_fn, **({"flip": parsed.value} if parsed.kind == "flip" else {"sigma": parsed.value}), seed=seed)

    def perturb(self, scores: Sequence[float]) -> np.ndarray:
        """The noisy version of clean ``scores``."""
        scores = np.asarray(scores, dtype=np.float64)
        center = scores.mean() if self.center is None else self.center
        flipped = self.rng.random(len(scores)) < self.flip
        scores = np.where(flipped, 2 * center - scores, scores)
        if self.sigma > 0:
            scores = scores + self.rng.normal(0.0, self.sigma, len(scores))
        return scores

    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        return self.perturb(self.reward_fn(prompts, responses)).tolist()
