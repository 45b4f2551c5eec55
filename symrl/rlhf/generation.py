"""Sampling responses and scoring them again, with one definition of the policy's distribution.

The distribution PPO trains is :func:`policy_logits`: the model's logits divided by the temperature, with
the end-of-sequence token forbidden before ``min_new_tokens``. Generation records the log-probability of each
sampled token under exactly that distribution, and :func:`score` recomputes it the same way, so the PPO
ratio starts at 1 and the KL to the reference is computed on like terms (SPEC 5: a constraint applied when
sampling but not when scoring makes the KL estimate strongly negative). ``top_k`` only narrows which tokens
may be sampled; log-probabilities are those of the full constrained distribution.

Prompts are left-padded; position ids follow the attention mask, so padding never shifts a token's position.
Rows that share a prompt (GRPO's groups) compute it once, in sampling and in scoring (:func:`distinct_prompts`).
Every forward pass goes through :func:`symrl.rlhf.decoder.forward` (symrl's plain forward where it covers the model).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch
from torch.nn import functional as F

from .decoder import forward


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int = 48
    min_new_tokens: int = 0
    temperature: float = 1.0
    top_k: int = 0  # 0: sample from the whole vocabulary
    eos_token_id: Optional[int] = None
    pad_token_id: int = 0


@dataclass
class Generated:
    """A batch of prompts with sampled responses. Shapes: ``[B, P + T]`` for the sequence, ``[B, T]`` else."""

    sequences: torch.Tensor
    attention_mask: torch.Tensor
    prompt_length: int
    response_mask: torch.Tensor  # 1 for tokens the policy produced (up to and including EOS)
    logprobs: torch.Tensor  # log-probability of each produced token when it was sampled; 0 on padding

    @property
    def responses(self) -> torch.Tensor:
        return self.sequences[:, self.prompt_length:]


def policy_logits(logits: torch.Tensor, steps: torch.Tensor | int, sampling: Sampling) -> torch.Tensor:
    """The trained distribution's logits at response positions ``steps`` (0 = first response token)."""
    logits = logits.float() / sampling.temperature
    if sampling.min_new_tokens > 0 and sampling.eos_token_id is not None:
        steps = torch.as_tensor(steps, device=logits.device)
        forbid = (steps < sampling.min_new_tokens).expand(logits.shape[:-1])
        eos = logits[..., sampling.eos_token_id]
        logits = logits.clone()
        logits[..., sampling.eos_token_id] = torch.where(forbid, torch.full_like(eos, float("-inf")), eos)
    return logits


def token_lengths(tokenizer, texts: list[str]) -> list[int]:
    """How many tokens each text has (one batched tokenizer call)."""
    return [len(ids) for ids in tokenizer(list(texts))["input_ids"]] if texts else []


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding (the first real token is at 0)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


def response_slice(batch: Generated) -> slice:
    """The sequence positions whose outputs predict the response tokens (the state before each one)."""
    return slice(batch.prompt_length - 1, batch.prompt_length - 1 + batch.response_mask.shape[1])


def generate(model: torch.nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, sampling: Sampling,
             generator: torch.Generator) -> Generated:
    """Sample up to ``max_new_tokens`` per prompt with a KV cache; rows stop at EOS (then padding)."""
    with torch.inference_mode():  # no autograd bookkeeping at all (cheaper than no_grad for a step's many small ops)
        generated = _sample(model, prompt_ids, prompt_mask, sampling, generator)
    # inference-mode tensors cannot be saved for a backward pass: clones made outside it can (the update uses them)
    return dataclasses.replace(generated, **{field.name: getattr(generated, field.name).clone()
                                             for field in dataclasses.fields(Generated)
                                             if isinstance(getattr(generated, field.name), torch.Tensor)})


def _sample(model: torch.nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, sampling: Sampling,
            generator: torch.Generator) -> Generated:
    batch, prompt_length = prompt_ids.shape
    attention = prompt_mask.long()
    past, logits = prefill(model, prompt_ids, attention, distinct_prompts(model, prompt_ids, attention))
    next_position = position_ids(attention)[:, -1] + 1
    finished = torch.zeros(batch, dtype=torch.bool, device=prompt_ids.device)
    tokens, logprobs, valid = [], [], []
    for step in range(sampling.max_new_tokens):
        constrained = policy_logits(logits, step, sampling)
        log_probs = F.log_softmax(constrained, dim=-1)
        candidates = constrained
        if 0 < sampling.top_k < constrained.shape[-1]:
            kth = constrained.topk(sampling.top_k, dim=-1).values[..., -1:]
            candidates = constrained.masked_fill(constrained < kth, float("-inf"))
        token = draw(F.softmax(candidates, dim=-1), generator)
        token = torch.where(finished, torch.full_like(token, sampling.pad_token_id), token)
        produced = ~finished
        tokens.append(token)
        logprobs.append(torch.where(produced, log_probs.gather(-1, token[:, None]).squeeze(-1), torch.zeros(())))
        valid.append(produced)
        if sampling.eos_token_id is not None:
            finished = finished | (token == sampling.eos_token_id)
        if bool(finished.all()) or step == sampling.max_new_tokens - 1:
            break
        attention = torch.cat([attention, produced.long()[:, None]], dim=1)
        logits, past = forward(model, token[:, None], attention, next_position[:, None], past, use_cache=True)
        logits = logits[:, -1]
        next_position = next_position + 1
    response_mask = torch.stack(valid, dim=1).long()
    return Generated(
        sequences=torch.cat([prompt_ids, torch.stack(tokens, dim=1)], dim=1),
        attention_mask=torch.cat([prompt_mask.long(), response_mask], dim=1),
        prompt_length=prompt_length, response_mask=response_mask, logprobs=torch.stack(logprobs, dim=1),
    )


def draw(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One token per row of ``probs`` ``[B, V]``: the inverse of the row's cumulative distribution (float64; float32
    on MPS) at one uniform draw. Tokens of probability 0 are never drawn. The same distribution as
    ``torch.multinomial(probs, 1)`` (other draws), about 5x faster on a CPU at SmolLM2's 49k-word vocabulary in an
    ad-hoc timing (benchmarks/RESULTS.md)."""
    cdf = probs.to(torch.float32 if probs.device.type == "mps" else torch.float64).cumsum(-1)
    total = cdf[:, -1:]
    u = torch.rand(total.shape, generator=generator, device=cdf.device, dtype=cdf.dtype) * total
    u = torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))  # below the total: the token is inside
    return torch.searchsorted(cdf, u, right=True).squeeze(-1)


def distinct_prompts(model: torch.nn.Module, prompt_ids: torch.Tensor,
                     prompt_mask: torch.Tensor) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """``(first, inverse)`` when some rows share a prompt (a group's responses do): ``first`` the row of each distinct
    prompt, ``inverse`` each row's distinct prompt; ``None`` when all differ, or when the model is in training mode
    (dropout would then differ between rows that share a prompt computed once)."""
    if model.training or prompt_ids.shape[0] < 2:
        return None
    distinct, inverse = torch.unique(torch.cat([prompt_ids, prompt_mask.long()], 1), dim=0, return_inverse=True)
    if distinct.shape[0] == prompt_ids.shape[0]:
        return None
    rows = torch.arange(prompt_ids.shape[0], device=prompt_ids.device)
    first = torch.full((distinct.shape[0],), prompt_ids.shape[0], device=prompt_ids.device)
    return first.scatter_reduce(0, inverse, rows, reduce="amin"), inverse


def prefill(model: torch.nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
            shared: Optional[tuple[torch.Tensor, torch.Tensor]]) -> tuple:
    """The prompts' forward pass: ``(KV cache, logits at the last prompt position)`` for every row. With ``shared``
    (:func:`distinct_prompts`) each distinct prompt is computed once and its cache and logits copied to the rows
    that share it (``index_select``: gradients flow back to the one computation, summed)."""
    rows = slice(None) if shared is None else shared[0]
    logits, past = forward(model, prompt_ids[rows], prompt_mask[rows], position_ids(prompt_mask)[rows],
                           logits_to_keep=1, use_cache=True)  # the output layer on the last prompt position only
    logits = logits[:, -1]
    if shared is not None:
        past.reorder_cache(shared[1])
        logits = logits[shared[1]]
    return past, logits


def response_logits(model: torch.nn.Module, batch: Generated) -> torch.Tensor:
    """Raw logits that predict each response token, ``[B, T, V]``: one forward over prompt + response (the output
    layer only on the last T + 1 positions), or, when rows share a prompt (:func:`distinct_prompts`), each distinct
    prompt once (:func:`prefill`: its last position predicts the first response token) and then the responses on
    its cache. The same values up to float rounding (tests/test_rlhf.py); for GRPO's groups of G it spares
    (G - 1) / G of the prompt's arithmetic in the reference's forward and in every update pass."""
    steps = batch.response_mask.shape[1]
    prompt_ids, prompt_mask = batch.sequences[:, :batch.prompt_length], batch.attention_mask[:, :batch.prompt_length]
    shared = distinct_prompts(model, prompt_ids, prompt_mask)
    if shared is None:
        logits, _ = forward(model, batch.sequences, batch.attention_mask, position_ids(batch.attention_mask),
                            logits_to_keep=steps + 1)
        return logits[:, :steps]
    past, first = prefill(model, prompt_ids, prompt_mask, shared)
    if steps == 1:
        return first[:, None]
    logits, _ = forward(model, batch.responses[:, :-1], batch.attention_mask[:, :-1],
                        position_ids(batch.attention_mask)[:, batch.prompt_length:-1], past, use_cache=True)
    return torch.cat([first[:, None], logits], 1)


def score(model: torch.nn.Module, batch: Generated, sampling: Sampling,
          entropy_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logprobs, entropy)`` of the response tokens under :func:`policy_logits`, ``[B, T]``, 0 on padding.
    ``entropy_grad=False`` computes the entropy outside autograd (a statistic only: less memory and time)."""
    steps = torch.arange(batch.response_mask.shape[1], device=batch.sequences.device)[None, :]
    log_probs = F.log_softmax(policy_logits(response_logits(model, batch), steps, sampling), dim=-1)
    taken = log_probs.gather(-1, batch.responses[..., None]).squeeze(-1)
    with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
        probs = log_probs.exp()
        entropy = -(probs * torch.where(probs > 0, log_probs, torch.zeros_like(log_probs))).sum(-1)
    mask = batch.response_mask.bool()
    return torch.where(mask, taken, torch.zeros_like(taken)), torch.where(mask, entropy, torch.zeros_like(entropy))
