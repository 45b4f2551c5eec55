"""Token-level PPO and symmetric PPO for causal language models (SPEC 5).

One iteration: sample responses to a batch of prompts, score them with the reward function (on decoded
text), build per-token rewards (``-kl_coef * (log p - log p_ref)`` on every token, the score added on the
last one), GAE over tokens, then epochs of minibatch updates. The policy loss is
:func:`symrl.losses.symmetric_ppo_loss` with the response-token mask - the same function the Gymnasium
trainer uses - after per-minibatch advantage normalisation over valid tokens; the value loss is clipped.
Dropout stays off (``eval()``), so the first PPO ratio of an update is exactly 1.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .. import runs
from ..advantages import normalize_advantages, sign_change_ratio
from ..errors import SymrlError, TrainingDiverged
from ..losses import masked_mean, symmetric_ppo_loss
from .advantages import token_gae
from .generation import Generated, Sampling, generate, score
from .kl import kl_controller
from .models import ValueModel, response_values, value_model_for

RewardFn = Callable[[Sequence[str], Sequence[str]], Sequence[float]]
METRICS = ["iteration", "episodes", "tokens", "time", "tokens_per_s", "reward", "score", "kl", "kl_coef", "entropy",
           "response_length", "loss", "policy_loss", "rl_loss", "reverse_loss", "value_loss", "clip_fraction",
           "approx_kl", "sign_change_ratio", "nll"]


@dataclass
class RLHFConfig:
    """Settings of a token-level (symmetric) PPO run; defaults follow SPEC 5's IMDB setup."""

    task: str = "custom"  # the run's name for reports (the env column of symrl.results)
    algo: str = "ppo"  # ppo or sppo (symmetric PPO)
    alpha: float = 1.0
    beta: float = 0.0
    z: float = -1.0
    policy_coef: float = 1.0
    iterations: int = 60
    batch_size: int = 112  # trajectories per iteration
    minibatch_size: int = 28
    epochs: int = 5
    learning_rate: float = 5e-6
    kl_coef: float = 0.001
    kl_target: Optional[float] = None  # adaptive KL controller when set
    kl_horizon: int = 10_000
    kl_stop: float = 50.0  # a mean per-sequence KL above this stops the run (exploding KL)
    clip_range: float = 0.2
    value_clip: float = 0.2
    gamma: float = 0.99
    lam: float = 0.95
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    max_grad_norm: float = 1.0
    max_new_tokens: int = 48
    min_new_tokens: int = 0
    temperature: float = 1.0
    top_k: int = 50
    max_prompt_tokens: int = 64
    nll_coef: float = 0.0  # auxiliary NLL on reference texts (the authors use 0.1 with reference texts)
    nll_batch_size: int = 8
    seed: int = 0
    checkpoint_every: int = 10

    def validate(self) -> "RLHFConfig":
        if self.algo not in ("ppo", "sppo"):
            raise SymrlError(f"algo must be ppo or sppo (symmetric PPO), got {self.algo!r}")
        if self.z >= 0:
            raise SymrlError(f"z must be negative (log 0 of the reverse cross entropy), got {self.z}")
        if self.batch_size % self.minibatch_size:
            raise SymrlError(f"batch_size {self.batch_size} must be a multiple of minibatch_size {self.minibatch_size}")
        if self.min_new_tokens > self.max_new_tokens:
            raise SymrlError("min_new_tokens cannot exceed max_new_tokens")
        return self


@dataclass
class Rollout(Generated):
    """A generated batch with everything the update needs, all ``[B, T]`` over response tokens."""

    old_logprobs: torch.Tensor = None
    ref_logprobs: torch.Tensor = None
    old_values: torch.Tensor = None
    advantages: torch.Tensor = None
    returns: torch.Tensor = None

    def select(self, index: torch.Tensor) -> "Rollout":
        return dataclasses.replace(self, **{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)
                                            if torch.is_tensor(getattr(self, f.name))})


class RLHFTrainer:
    """Trains ``policy`` (a Hugging Face causal LM) on ``prompts`` against ``reward_fn(prompts, responses)``."""

    def __init__(self, cfg: RLHFConfig, policy: torch.nn.Module, tokenizer, reward_fn: RewardFn, prompts: Sequence[str],
                 value_model: Optional[ValueModel] = None, reference: Optional[torch.nn.Module] = None,
                 reference_texts: Sequence[str] = (), out: Optional[str | Path] = None, resume: bool = False):
        self.cfg = cfg.validate()
        if tokenizer.pad_token_id is None:
            raise SymrlError("the tokenizer has no pad token; set one, e.g. tokenizer.pad_token = tokenizer.eos_token")
        self.tokenizer, self.reward_fn = tokenizer, reward_fn
        self.prompts, self.reference_texts = list(prompts), list(reference_texts)
        if not self.prompts:
            raise SymrlError("no prompts; give at least one prompt")
        if cfg.nll_coef > 0 and not self.reference_texts:
            raise SymrlError("nll_coef > 0 needs reference_texts (the texts of the auxiliary NLL loss)")
        longest = max(len(tokenizer(p)["input_ids"]) for p in self.prompts)
        if longest > cfg.max_prompt_tokens:
            raise SymrlError(f"a prompt has {longest} tokens, over max_prompt_tokens={cfg.max_prompt_tokens}; "
                             "shorten the prompts or raise the limit")
        torch.manual_seed(cfg.seed)
        self.policy = policy.eval()
        self.reference = (reference if reference is not None else _frozen_copy(policy)).eval()
        self.value_model = (value_model if value_model is not None else value_model_for(policy)).eval()
        # a shared body appears in both modules: each parameter once
        self.trained_parameters = list({id(p): p for p in [*self.policy.parameters(), *self.value_model.parameters()]}.values())
        self.optimizer = torch.optim.AdamW(self.trained_parameters, lr=cfg.learning_rate)
        self.sampling = Sampling(cfg.max_new_tokens, cfg.min_new_tokens, cfg.temperature, cfg.top_k,
                                 tokenizer.eos_token_id, tokenizer.pad_token_id)
        self.device = next(policy.parameters()).device
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.kl = kl_controller(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon)
        self.iteration = 0
        self.history: list[dict] = []
        self.run_dir = Path(out) if out is not None else None
        if resume:
            self._restore()

    # -- one iteration -----------------------------------------------------------------------------------
    @torch.no_grad()
    def rollout(self) -> tuple[Rollout, dict]:
        cfg = self.cfg
        prompts = [self.prompts[i] for i in self.rng.integers(len(self.prompts), size=cfg.batch_size)]
        self.tokenizer.padding_side = "left"
        encoded = self.tokenizer(prompts, return_tensors="pt", padding=True).to(self.device)
        generated = generate(self.policy, encoded["input_ids"], encoded["attention_mask"], self.sampling, self.generator)
        old_logprobs, _ = score(self.policy, generated, self.sampling)
        ref_logprobs, _ = score(self.reference, generated, self.sampling)
        values = response_values(self.value_model, generated)
        mask = generated.response_mask.float()
        # after EOS the sampler writes the pad token, which decoding skips like every special token
        responses = self.tokenizer.batch_decode(generated.responses, skip_special_tokens=True)
        scores = torch.as_tensor([float(s) for s in self.reward_fn(prompts, responses)], device=self.device)
        kl = (old_logprobs - ref_logprobs) * mask
        rewards = -self.kl.value * kl
        last = mask.sum(1).long().clamp_min(1) - 1
        rewards[torch.arange(len(last)), last] += scores
        advantages, returns = token_gae(rewards, values, mask, cfg.gamma, cfg.lam)
        rollout = Rollout(**{f.name: getattr(generated, f.name) for f in dataclasses.fields(Generated)},
                          old_logprobs=old_logprobs, ref_logprobs=ref_logprobs, old_values=values,
                          advantages=advantages, returns=returns)
        stats = {"score": scores.mean().item(), "score_std": scores.std().item() if len(scores) > 1 else 0.0,
                 "reward": (rewards.sum(1)).mean().item(), "kl": kl.sum(1).mean().item(),
                 "response_length": mask.sum(1).mean().item(), "tokens": int(mask.sum().item())}
        return rollout, stats

    def update(self, batch: Rollout) -> dict:
        cfg = self.cfg
        logs: dict[str, list[float]] = {}
        for _ in range(cfg.epochs):
            order = torch.as_tensor(self.rng.permutation(cfg.batch_size), device=self.device)
            for start in range(0, cfg.batch_size, cfg.minibatch_size):
                mb = batch.select(order[start: start + cfg.minibatch_size])
                mask = mb.response_mask.float()
                logprobs, entropy = score(self.policy, mb, self.sampling)
                values = response_values(self.value_model, mb)
                advantages = normalize_advantages(mb.advantages, mask)
                changed = sign_change_ratio(mb.advantages, advantages, mask)
                pg = symmetric_ppo_loss(logprobs, mb.old_logprobs, advantages, clip_range=cfg.clip_range,
                                        alpha=cfg.alpha, beta=cfg.beta, z=cfg.z, mask=mask)
                clipped = mb.old_values + (values - mb.old_values).clamp(-cfg.value_clip, cfg.value_clip)
                value_loss = 0.5 * masked_mean(torch.maximum((values - mb.returns) ** 2, (clipped - mb.returns) ** 2), mask)
                entropy_mean = masked_mean(entropy, mask)
                loss = cfg.policy_coef * pg.loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy_mean
                if cfg.nll_coef > 0:
                    nll = self._reference_nll()
                    loss = loss + cfg.nll_coef * nll
                    logs.setdefault("nll", []).append(float(nll.detach()))
                if not torch.isfinite(loss):
                    raise TrainingDiverged(f"non-finite loss at iteration {self.iteration}; the last checkpoint is kept")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.trained_parameters, cfg.max_grad_norm)
                self.optimizer.step()
                for key, value in (("loss", loss), ("policy_loss", pg.loss), ("rl_loss", pg.rl_loss),
                                   ("reverse_loss", pg.reverse_loss), ("value_loss", value_loss), ("entropy", entropy_mean),
                                   ("clip_fraction", pg.clip_fraction), ("approx_kl", pg.approx_kl),
                                   ("sign_change_ratio", changed)):
                    logs.setdefault(key, []).append(float(value.detach()))
        return {key: float(np.mean(values)) for key, values in logs.items()}

    def _reference_nll(self) -> torch.Tensor:
        """Mean token NLL of the policy on a random batch of reference texts (keeps it close to real text)."""
        texts = [self.reference_texts[i] for i in self.rng.integers(len(self.reference_texts), size=self.cfg.nll_batch_size)]
        self.tokenizer.padding_side = "right"
        encoded = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                                 max_length=self.cfg.max_prompt_tokens + self.cfg.max_new_tokens).to(self.device)
        labels = encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, -100)
        return self.policy(**encoded, labels=labels).loss

    def step(self) -> dict:
        """One iteration; returns its metrics row."""
        start = time.time()
        batch, stats = self.rollout()
        if not math.isfinite(stats["kl"]) or stats["kl"] > self.cfg.kl_stop:
            raise TrainingDiverged(f"KL to the reference is {stats['kl']:.3g} at iteration {self.iteration} (limit "
                                   f"kl_stop={self.cfg.kl_stop}); lower the learning rate or raise kl_coef. "
                                   "The last checkpoint is kept")
        logs = self.update(batch)
        self.kl.update(stats["kl"], self.cfg.batch_size)
        self.iteration += 1
        seconds = time.time() - start
        row = {"iteration": self.iteration, "episodes": self.iteration * self.cfg.batch_size, "time": seconds,
               "tokens_per_s": stats["tokens"] / max(seconds, 1e-9), "kl_coef": self.kl.value, **stats, **logs}
        self.history.append(row)
        return row

    def run(self) -> list[dict]:
        """Train to ``cfg.iterations``. With an ``out`` directory this is an ordinary run directory:
        ``config.yaml``, ``metrics.csv`` per iteration, ``eval.csv`` (step = trajectories so far, the batch's
        mean score as ``mean_return``, what ``symrl report`` reads), ``status.json`` and checkpoints."""
        if self.run_dir is None:
            while self.iteration < self.cfg.iterations:
                self.step()
            return self.history
        self.run_dir.mkdir(parents=True, exist_ok=True)
        runs.write_config(self.run_dir, dataclasses.asdict(self.cfg))
        runs.write_status(self.run_dir, "running", step=self.iteration)
        log = runs.CsvLog(self.run_dir / runs.METRICS, METRICS)
        evaluations = runs.CsvLog(self.run_dir / runs.EVAL, runs.EVAL_COLUMNS)
        try:
            while self.iteration < self.cfg.iterations:
                row = self.step()
                log.write(row)
                evaluations.write({"step": row["episodes"], "mean_return": row["score"], "std_return": row["score_std"],
                                   "episodes": self.cfg.batch_size})
                if self.iteration % self.cfg.checkpoint_every == 0 or self.iteration == self.cfg.iterations:
                    self._save()
            runs.write_status(self.run_dir, "finished", step=self.iteration)
        except Exception as exc:
            runs.write_status(self.run_dir, "failed", step=self.iteration, error=str(exc).splitlines()[0] if str(exc) else "")
            raise
        finally:
            log.close()
            evaluations.close()
        return self.history

    # -- checkpoints ----------------------------------------------------------------------------------------
    def _state(self) -> dict:
        return {"policy": self.policy.state_dict(), "value_model": self.value_model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "iteration": self.iteration, "kl_coef": self.kl.value,
                "generator": self.generator.get_state(), "rng": self.rng.bit_generator.state}

    def _save(self) -> None:
        runs.write_config(self.run_dir, dataclasses.asdict(self.cfg))
        runs.atomic_torch_save(self._state(), self.run_dir / runs.CHECKPOINT)

    def _restore(self) -> None:
        if self.run_dir is None:
            raise SymrlError("resume needs the run directory (out=)")
        state = runs.safe_torch_load(self.run_dir / runs.CHECKPOINT)
        self.policy.load_state_dict(state["policy"])
        self.value_model.load_state_dict(state["value_model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.iteration, self.kl.value = int(state["iteration"]), float(state["kl_coef"])
        self.generator.set_state(state["generator"])
        self.rng.bit_generator.state = state["rng"]
        # drop rows a killed run logged after its checkpoint: metrics by iteration, evaluations by step
        runs.truncate_csv(self.run_dir / runs.METRICS, METRICS, self.iteration, key="iteration")
        runs.truncate_csv(self.run_dir / runs.EVAL, runs.EVAL_COLUMNS, self.iteration * self.cfg.batch_size)


def _frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    reference = copy.deepcopy(model)
    for p in reference.parameters():
        p.requires_grad_(False)
    return reference
