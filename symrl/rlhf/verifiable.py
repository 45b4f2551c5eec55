"""Verifiable rewards: tasks whose reward is an exact programmatic check on the decoded text (RLVR).

``arithmetic`` (``symrl rlhf --task arithmetic``): a fixed two-shot addition prompt ::

    3 + 4 = 7
    12 + 5 = 17
    {a} + {b} =

over every pair ``a, b`` in ``[0, 30)`` (900 prompts). :class:`ExactAnswer` scores a response 1.0 when its first
integer (``^\\s*(-?\\d+)``) is ``a + b`` and 0.0 otherwise; it reads ``a`` and ``b`` back from the prompt's last
line, so it scores any prompt of that form. A split with a fixed seed (:data:`SPLIT_SEED`, independent of the
run's seed) holds ``eval_prompts`` of the pairs out for evaluation; training samples the rest. The policy is the
sentiment task's SmolLM2-135M-Instruct (no reward model is needed).

The untrained policy's pass rate, measured with the trainer's own evaluation (``RLHFTrainer.evaluate`` with the
preset: temperature 1, top-k 0, at most 5 new tokens, the 128 held-out prompts, run seed 0, so the evaluation
generator's seed is 10,000): **0.336** (43 of 128; standard error about 0.04). See docs/rlhf.md.

Verifier noise, the RLVR analogue of reward flip, is the reward-noise spec ``verifier:P`` or ``verifier:FP/FN``
(:class:`symrl.rlhf.rewards.NoisyReward`): evaluation reports the clean pass rate as ``mean_return``.

Another exact check is a :class:`VerifiableTask` with its own prompts, answers and ``check``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from ..errors import SymrlError

SPLIT_SEED = 20_230  # the held-out split of every verifiable task; not the run's seed
FEW_SHOT = "3 + 4 = 7\n12 + 5 = 17\n"
OPERANDS = (0, 30)  # a and b range over [0, 30)
_ANSWER = re.compile(r"^\s*(-?\d+)")
_SUM = re.compile(r"^\s*(-?\d+)\s*\+\s*(-?\d+)\s*=\s*$")


@dataclass(frozen=True)
class VerifiableTask:
    """Prompts, the exact answer of each, and the reward: ``check(prompts, responses) -> list[float]``."""

    name: str
    prompts: list[str]
    answers: list[str]
    check: Callable[[Sequence[str], Sequence[str]], list[float]]

    def __post_init__(self):
        if len(self.prompts) != len(self.answers):
            raise SymrlError(f"{self.name}: {len(self.answers)} answers for {len(self.prompts)} prompts")

    def split(self, eval_count: int, seed: int = SPLIT_SEED) -> tuple[list[str], list[str]]:
        """(training prompts, evaluation prompts): ``eval_count`` prompts held out by a seeded permutation, the
        same for every run (the run's seed does not enter it)."""
        if not 0 < eval_count < len(self.prompts):
            raise SymrlError(f"the {self.name} task has {len(self.prompts)} prompts: eval_prompts must lie in "
                             f"[1, {len(self.prompts) - 1}], got {eval_count}; lower eval_prompts")
        order = np.random.default_rng(seed).permutation(len(self.prompts))
        held = set(order[:eval_count].tolist())
        train = [p for i, p in enumerate(self.prompts) if i not in held]
        return train, [self.prompts[i] for i in order[:eval_count]]


def arithmetic_prompt(a: int, b: int) -> str:
    return f"{FEW_SHOT}{a} + {b} ="


def addends(prompt: str) -> tuple[int, int]:
    """``(a, b)`` of a prompt whose last line is ``a + b =``."""
    match = _SUM.match(prompt.rsplit("\n", 1)[-1])
    if match is None:
        last = prompt.rsplit("\n", 1)[-1]
        raise SymrlError(f"cannot score the prompt ending {last[-40:]!r}: ExactAnswer needs prompts whose last line is "
                         "'A + B =' (as symrl.rlhf.verifiable.arithmetic_prompt writes them)")
    return int(match.group(1)), int(match.group(2))


def first_integer(response: str) -> Optional[int]:
    """The integer a response starts with (after white space), or None."""
    match = _ANSWER.match(response)
    return int(match.group(1)) if match else None


class ExactAnswer:
    """The arithmetic task's verifier: 1.0 when the response's first integer is the sum the prompt asks for, else
    0.0. A prompt it cannot parse is a :class:`~symrl.errors.SymrlError`."""

    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        if len(prompts) != len(responses):
            raise SymrlError(f"{len(prompts)} prompts and {len(responses)} responses; give one response per prompt")
        return [float(first_integer(r) == sum(addends(p))) for p, r in zip(prompts, responses, strict=True)]


def arithmetic_task(low: int = OPERANDS[0], high: int = OPERANDS[1]) -> VerifiableTask:
    """Every ``a + b =`` with ``a, b`` in ``[low, high)``, in order (a major)."""
    if high <= low:
        raise SymrlError(f"the operand range [{low}, {high}) is empty")
    pairs = [(a, b) for a in range(low, high) for b in range(low, high)]
    return VerifiableTask("arithmetic", [arithmetic_prompt(a, b) for a, b in pairs], [str(a + b) for a, b in pairs],
                          ExactAnswer())
