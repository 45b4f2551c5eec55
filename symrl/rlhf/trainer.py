"""Token-level PPO, GRPO and RLOO and their symmetric forms for causal language models (SPEC 5).

One iteration: sample ``group_size`` responses to each of ``batch_size / group_size`` prompts, score them with
the reward function (on decoded text), then advantages:

- **PPO** (with a critic): per-token rewards (``-kl_coef * (log p - log p_ref)`` on every token, the score added on
  the last one), GAE over tokens with the value model, per-minibatch normalisation over valid tokens; the value loss
  is clipped.
- **GRPO / RLOO** (critic-free, as TRL, veRL and OpenRLHF train today): each response's score (minus
  ``kl_coef`` times its summed KL when ``kl_mode="reward"``) against its group's mean (GRPO, optionally divided by
  the group's standard deviation) or the mean of the other responses (RLOO, leave-one-out), the same advantage on
  every token of the response; no value model. With ``kl_mode="loss"`` the KL to the reference is a loss term
  instead (the k3 estimator ``exp(ref - log p) - (ref - log p) - 1`` per token, as GRPO and veRL's ``use_kl_loss``).

Then epochs of minibatch updates. The policy loss is :func:`symrl.losses.symmetric_ppo_loss` with the
response-token mask - the same function the Gymnasium trainer uses - its per-token terms aggregated by
``loss_agg_mode`` (veRL's names, :func:`symrl.losses.aggregate_tokens`).
Dropout stays off (``eval()``), so the first PPO ratio of an update is 1 up to rounding (the old log-probabilities
are those recorded while sampling, equal to a recomputation within 1e-5).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .. import runs
from ..advantages import normalize_advantages, sign_change_ratio
from ..errors import SymrlError, TrainingDiverged, first_line
from ..losses import aggregate_tokens, masked_mean, symmetric_ppo_loss
from .advantages import group_advantages, token_gae
from .config import CRITIC_FREE, RLHFConfig
from .generation import Generated, Sampling, generate, score, token_lengths
from .kl import kl_controller
from .models import ValueModel, response_values, value_model_for
from .rewards import NoisyReward, RewardFn

METRICS = ["iteration", "step", "tokens", "time", "tokens_per_s", "reward", "score", "train_score", "kl", "kl_coef",
           "entropy", "response_length", "loss", "policy_loss", "rl_loss", "reverse_loss", "value_loss", "clip_fraction",
           "approx_kl", "sign_change_ratio", "nll", "kl_loss", "flat_groups"]
EVAL_COLUMNS = [*runs.EVAL_COLUMNS, "kl", "win_rate", "perplexity", "response_length"]
SAMPLES = runs.SAMPLES
PROCESS_SEED_STRIDE = 100_003  # process r of a multi-process run samples with seed + r * stride
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
    """Trains ``policy`` (a Hugging Face causal LM) on ``prompts`` against ``reward_fn(prompts, responses)``.

    ``reward_fn`` is the clean reward; ``cfg.reward_noise`` corrupts it for training only. ``eval_prompts`` are
    sampled every ``cfg.eval_every`` iterations (and before training) with a fixed seed and scored with the
    clean reward; with ``eval_references`` (a human continuation or summary per eval prompt) the evaluation
    also gives the win rate against them and the policy's perplexity on them. A LoRA policy (``peft``) is its
    own reference with the adapters disabled.

    With an ``accelerate.Accelerator`` of several processes (``accelerate launch`` / ``torchrun``), every
    process samples ``batch_size`` trajectories with its own seed, gradients are averaged across processes,
    metrics are means over processes, and only the main process evaluates and writes files.
    """

    def __init__(self, cfg: RLHFConfig, policy: torch.nn.Module, tokenizer, reward_fn: RewardFn, prompts: Sequence[str],
                 value_model: Optional[ValueModel] = None, reference: Optional[torch.nn.Module] = None,
                 reference_texts: Sequence[str] = (), out: Optional[str | Path] = None, resume: bool = False,
                 eval_prompts: Sequence[str] = (), eval_references: Sequence[str] = (), info: Optional[dict] = None,
                 overwrite: bool = False, accelerator=None):
        if not isinstance(cfg, RLHFConfig):
            raise SymrlError(f"cfg must be an RLHFConfig (symrl.rlhf.RLHFConfig(...) or "
                             f"symrl.rlhf.tasks.make_rlhf_config(...)), got {type(cfg).__name__}")
        self.cfg = cfg  # checked when it was built
        self.accelerator = accelerator
        self.rank = accelerator.process_index if accelerator is not None else 0
        self.is_main = accelerator is None or accelerator.is_main_process
        if accelerator is not None and accelerator.num_processes > 1 and cfg.share_body:
            raise SymrlError("share_body cannot be used with several processes; use the separate critic (share_body=false)")
        self.run_dir = Path(out) if out is not None else None
        if self.run_dir is not None:
            runs.check_out(self.run_dir, resume, overwrite)
        if tokenizer.pad_token_id is None:
            raise SymrlError("the tokenizer has no pad token; set one, e.g. tokenizer.pad_token = tokenizer.eos_token")
        self.tokenizer, self.reward_fn = tokenizer, reward_fn
        self.prompts, self.reference_texts = list(prompts), list(reference_texts)
        self.eval_prompts, self.eval_references = list(eval_prompts), list(eval_references)
        self.info = dict(info or {})
        if not self.prompts:
            raise SymrlError("no prompts; give at least one prompt")
        if self.eval_references and len(self.eval_references) != len(self.eval_prompts):
            raise SymrlError(f"{len(self.eval_references)} eval_references for {len(self.eval_prompts)} eval_prompts; "
                             "give one reference per evaluation prompt (or none)")
        if cfg.nll_coef > 0 and not self.reference_texts:
            raise SymrlError("nll_coef > 0 needs reference_texts (the texts of the auxiliary NLL loss)")
        longest = max(token_lengths(tokenizer, self.prompts + self.eval_prompts))
        if longest > cfg.max_prompt_tokens:
            raise SymrlError(f"a prompt has {longest} tokens, over max_prompt_tokens={cfg.max_prompt_tokens}; "
                             "shorten the prompts or raise the limit")
        self.context = _context_length(policy)
        if self.context is not None and longest + cfg.max_new_tokens > self.context:
            raise SymrlError(f"a prompt of {longest} tokens and max_new_tokens={cfg.max_new_tokens} do not fit the policy's "
                             f"context of {self.context} tokens; lower max_new_tokens or shorten the prompts")
        torch.manual_seed(cfg.seed)
        self.policy = policy.eval()
        adapters_off = hasattr(policy, "disable_adapter") and reference is None  # peft: reference = adapters off
        self.reference = None if adapters_off else (reference if reference is not None else _frozen_copy(policy)).eval()
        if cfg.critic_free and value_model is not None:
            raise SymrlError(f"{cfg.algo} trains no value model (its baseline is the group's); drop value_model")
        self.value_model = None if cfg.critic_free else (
            value_model if value_model is not None else value_model_for(policy, cfg.share_body)).eval()
        modules = [m for m in (self.policy, self.value_model) if m is not None]
        # a shared body appears in both modules: each parameter once; frozen (LoRA base) weights are left out
        self.trained_parameters = list({id(p): p for m in modules for p in m.parameters() if p.requires_grad}.values())
        self.optimizer = _adamw(self.trained_parameters, cfg.learning_rate)
        self.sampling = Sampling(cfg.max_new_tokens, cfg.min_new_tokens, cfg.temperature, cfg.top_k,
                                 tokenizer.eos_token_id, tokenizer.pad_token_id)
        self.device = next(policy.parameters()).device
        # the modules gradients flow through: the same as policy/value_model, or their distributed wrappers
        self.train_policy, self.train_value = self.policy, self.value_model
        if accelerator is not None:
            self.device = accelerator.device
            for module in (self.policy, self.value_model, self.reference):
                if module is not None:
                    module.to(self.device)
            if self.value_model is None:
                self.train_policy, self.optimizer = accelerator.prepare(self.policy, self.optimizer)
            else:
                self.train_policy, self.train_value, self.optimizer = accelerator.prepare(self.policy, self.value_model,
                                                                                          self.optimizer)
        seed = cfg.seed + PROCESS_SEED_STRIDE * self.rank  # each process samples its own prompts and tokens
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.noise = NoisyReward.from_spec(reward_fn, cfg.reward_noise_spec, seed=seed + 1)
        self._reference_scores: Optional[np.ndarray] = None
        self.kl = kl_controller(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon)
        self.iteration = 0
        self.trajectories = 0  # over all processes; a resumed run may use another number of processes
        self.history: list[dict] = []
        self.history_eval: list[dict] = []
        # the main process holds the run's lock until run() ends: no second process trains, resumes or clears it
        self.lock = runs.RunLock(self.run_dir) if self.run_dir is not None and self.is_main else None
        if self.lock is not None:
            self.lock.acquire()
        try:
            if resume:
                self._restore()
            elif self.run_dir is not None and self.is_main:
                runs.clear_run(self.run_dir)  # --overwrite
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Release the run directory's lock (``run()`` does it when it ends)."""
        if getattr(self, "lock", None) is not None:
            self.lock.release()

    # -- one iteration -----------------------------------------------------------------------------------
    def _generate(self, prompts: Sequence[str], generator: torch.Generator) -> tuple[Generated, list[str]]:
        """Sample responses to ``prompts``; also returns them decoded (the reward acts on text)."""
        self.tokenizer.padding_side = "left"
        encoded = self.tokenizer(list(prompts), return_tensors="pt", padding=True).to(self.device)
        generated = generate(self.policy, encoded["input_ids"], encoded["attention_mask"], self.sampling, generator)
        # after EOS the sampler writes the pad token, which decoding skips like every special token
        return generated, self.tokenizer.batch_decode(generated.responses, skip_special_tokens=True)

    def _reference_logprobs(self, batch: Generated) -> torch.Tensor:
        if self.reference is not None:
            return score(self.reference, batch, self.sampling)[0]
        with self.policy.disable_adapter():
            return score(self.policy, batch, self.sampling)[0]

    @torch.no_grad()
    def rollout(self) -> tuple[Rollout, dict]:
        cfg = self.cfg
        # batch_size / group_size prompts, each group_size times in a row (a group of responses to one prompt)
        chosen = self.rng.integers(len(self.prompts), size=cfg.batch_size // cfg.group_size).repeat(cfg.group_size)
        prompts = [self.prompts[i] for i in chosen]
        generated, responses = self._generate(prompts, self.generator)
        # generation's own log-probabilities (equal to a recomputation within 1e-5; tested): one forward fewer
        old_logprobs = generated.logprobs
        ref_logprobs = self._reference_logprobs(generated)
        mask = generated.response_mask.float()
        clean = self._rewards(prompts, responses)
        noisy = self.noise.perturb(clean) if self.noise is not None else clean
        scores = torch.as_tensor(noisy, dtype=torch.float32, device=self.device)
        kl = (old_logprobs - ref_logprobs) * mask
        kl_coef = self.kl.value if cfg.kl_mode == "reward" else 0.0  # kl_mode "loss": a term of the loss instead
        values = returns = None
        stats: dict = {}
        if cfg.critic_free:
            rewards = scores - kl_coef * kl.sum(1)  # one reward per response
            sequence = group_advantages(rewards, cfg.group_size, CRITIC_FREE[cfg.algo], cfg.reward_scaling)
            advantages = sequence[:, None] * mask
            groups = scores.reshape(-1, cfg.group_size)
            stats["flat_groups"] = float((groups.amax(1) == groups.amin(1)).float().mean())  # all equal: no signal
        else:
            values = response_values(self.value_model, generated)
            rewards = -kl_coef * kl
            last = mask.sum(1).long().clamp_min(1) - 1
            rewards[torch.arange(len(last)), last] += scores
            advantages, returns = token_gae(rewards, values, mask, cfg.gamma, cfg.lam)
            rewards = rewards.sum(1)
        rollout = Rollout(**{f.name: getattr(generated, f.name) for f in dataclasses.fields(Generated)},
                          old_logprobs=old_logprobs, ref_logprobs=ref_logprobs, old_values=values,
                          advantages=advantages, returns=returns)
        stats.update({"score": float(clean.mean()), "train_score": float(noisy.mean()),
                      "reward": rewards.mean().item(), "kl": kl.sum(1).mean().item(),
                      "response_length": mask.sum(1).mean().item(), "tokens": int(mask.sum().item())})
        return rollout, stats

    def _rewards(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """``reward_fn``'s scores, checked: one finite number per response (a user's function may be wrong)."""
        try:
            scores = np.asarray(self.reward_fn(prompts, responses), dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise SymrlError(f"the reward function must return one number per response ({first_line(exc)})") from None
        if len(scores) != len(responses):
            raise SymrlError(f"the reward function returned {len(scores)} scores for {len(responses)} responses; "
                             "it must return one per response")
        if not np.isfinite(scores).all():
            raise SymrlError(f"the reward function returned a non-finite score ({scores[~np.isfinite(scores)][0]}); "
                             "it must return finite numbers")
        return scores

    def update(self, batch: Rollout) -> dict:
        cfg = self.cfg
        logs: dict[str, list[float]] = {}
        for _ in range(cfg.epochs):
            order = torch.as_tensor(self.rng.permutation(cfg.batch_size), device=self.device)
            for start in range(0, cfg.batch_size, cfg.minibatch_size):
                mb = batch.select(order[start: start + cfg.minibatch_size])
                mask = mb.response_mask.float()
                logprobs, entropy = score(self.train_policy, mb, self.sampling, entropy_grad=cfg.ent_coef > 0)
                if cfg.critic_free:  # group advantages, already on a common scale: no normalisation, no sign changes
                    advantages, changed = mb.advantages, torch.full((), float("nan"))
                else:
                    advantages = normalize_advantages(mb.advantages, mask)
                    changed = sign_change_ratio(mb.advantages, advantages, mask)
                if not self._finite_everywhere(torch.where(mask.bool(), advantages, 0.0).sum()):  # NaN values
                    raise TrainingDiverged(f"non-finite loss at iteration {self.iteration} (the advantages became NaN or "
                                           "inf); the last checkpoint is kept")
                pg = symmetric_ppo_loss(logprobs, mb.old_logprobs, advantages, clip_range=cfg.clip_range,
                                        alpha=cfg.alpha, beta=cfg.beta, z=cfg.z, reverse_mask=cfg.reverse_mask, mask=mask)
                policy_loss = aggregate_tokens(pg.per_sample, mask, cfg.loss_agg_mode, norm=cfg.max_new_tokens)
                entropy_mean = masked_mean(entropy, mask)
                loss = cfg.policy_coef * policy_loss - cfg.ent_coef * entropy_mean
                if self.value_model is not None:
                    values = response_values(self.train_value, mb)
                    clipped = mb.old_values + (values - mb.old_values).clamp(-cfg.value_clip, cfg.value_clip)
                    value_loss = 0.5 * masked_mean(torch.maximum((values - mb.returns) ** 2, (clipped - mb.returns) ** 2),
                                                   mask)
                    loss = loss + cfg.vf_coef * value_loss
                    logs.setdefault("value_loss", []).append(float(value_loss.detach()))
                if cfg.kl_mode == "loss":  # k3: an unbiased, non-negative estimate of KL(policy || reference)
                    log_ratio = (mb.ref_logprobs - logprobs).clamp(-20.0, 20.0)
                    kl_loss = aggregate_tokens(log_ratio.exp() - log_ratio - 1.0, mask, cfg.loss_agg_mode,
                                               norm=cfg.max_new_tokens)
                    loss = loss + self.kl.value * kl_loss
                    logs.setdefault("kl_loss", []).append(float(kl_loss.detach()))
                if cfg.nll_coef > 0:
                    nll = self._reference_nll()
                    loss = loss + cfg.nll_coef * nll
                    logs.setdefault("nll", []).append(float(nll.detach()))
                if not self._finite_everywhere(loss):
                    raise TrainingDiverged(f"non-finite loss at iteration {self.iteration}; the last checkpoint is kept")
                self.optimizer.zero_grad(set_to_none=True)
                if self.accelerator is not None:
                    self.accelerator.backward(loss)
                    self.accelerator.clip_grad_norm_(self.trained_parameters, cfg.max_grad_norm)
                else:
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(self.trained_parameters, cfg.max_grad_norm)
                self.optimizer.step()
                for key, value in (("loss", loss), ("policy_loss", policy_loss), ("rl_loss", pg.rl_loss),
                                   ("reverse_loss", pg.reverse_loss), ("entropy", entropy_mean),
                                   ("clip_fraction", pg.clip_fraction), ("approx_kl", pg.approx_kl),
                                   ("sign_change_ratio", changed)):
                    logs.setdefault(key, []).append(float(value.detach()))
        return {key: float(np.mean(values)) for key, values in logs.items()}

    def _text_nll(self, texts: Sequence[str], model: Optional[torch.nn.Module] = None) -> tuple[torch.Tensor, int]:
        """Mean token NLL of the policy on ``texts`` and the number of predicted tokens."""
        self.tokenizer.padding_side = "right"
        limit = self.cfg.max_prompt_tokens + self.cfg.max_new_tokens
        encoded = self.tokenizer(list(texts), return_tensors="pt", padding=True, truncation=True,
                                 max_length=min(limit, self.context or limit)).to(self.device)
        labels = encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, -100)
        return (model or self.policy)(**encoded, labels=labels).loss, int((labels[:, 1:] != -100).sum())

    def _reference_nll(self) -> torch.Tensor:
        """Mean token NLL of the policy on a random batch of reference texts (keeps it close to real text)."""
        texts = [self.reference_texts[i] for i in self.rng.integers(len(self.reference_texts), size=self.cfg.nll_batch_size)]
        return self._text_nll(texts, self.train_policy)[0]

    @torch.no_grad()
    def evaluate(self) -> tuple[dict, list[dict]]:
        """Clean reward, KL to the reference and response length on the evaluation prompts, sampled with a fixed
        seed (each evaluation draws the same random numbers); with references, the win rate against them (ties
        count half) and the policy's perplexity on prompt + reference. Returns the row and the samples."""
        cfg = self.cfg
        generator = torch.Generator(device=self.device).manual_seed(cfg.seed + 10_000)
        prompts, responses, kls, lengths = [], [], [], []
        for start in range(0, len(self.eval_prompts), cfg.batch_size):
            chunk = self.eval_prompts[start: start + cfg.batch_size]
            generated, texts = self._generate(chunk, generator)
            mask = generated.response_mask.float()
            logprobs = score(self.policy, generated, self.sampling)[0]
            kls += ((logprobs - self._reference_logprobs(generated)) * mask).sum(1).tolist()
            lengths += mask.sum(1).tolist()
            prompts += chunk
            responses += texts
        scores = self._rewards(prompts, responses)
        row = {"step": self.trajectories, "mean_return": float(scores.mean()),
               "std_return": float(scores.std()), "episodes": len(scores), "kl": float(np.mean(kls)),
               "response_length": float(np.mean(lengths))}
        samples = [{"prompt": p, "response": r, "score": float(s)} for p, r, s in zip(prompts, responses, scores, strict=True)]
        if self.eval_references:
            if self._reference_scores is None:  # the references do not change: score them once
                self._reference_scores = self._rewards(prompts, self.eval_references)
            wins = (scores > self._reference_scores) + 0.5 * (scores == self._reference_scores)
            total, count = 0.0, 0
            for start in range(0, len(prompts), cfg.batch_size):
                texts = [p + r for p, r in zip(prompts[start: start + cfg.batch_size],
                                               self.eval_references[start: start + cfg.batch_size], strict=True)]
                nll, tokens = self._text_nll(texts)
                total, count = total + float(nll) * tokens, count + tokens
            row.update(win_rate=float(wins.mean()), perplexity=math.exp(total / max(count, 1)))
            for sample, reference, ref_score in zip(samples, self.eval_references, self._reference_scores, strict=True):
                sample.update(reference=reference, reference_score=float(ref_score))
        return row, samples

    def step(self) -> dict:
        """One iteration; returns its metrics row."""
        start = time.time()
        batch, stats = self.rollout()
        stats = self._mean_over_processes(stats)  # every process sees the same KL and stops together
        if not math.isfinite(stats["kl"]) or stats["kl"] > self.cfg.kl_stop:
            raise TrainingDiverged(f"KL to the reference is {stats['kl']:.3g} at iteration {self.iteration} (limit "
                                   f"kl_stop={self.cfg.kl_stop}); lower the learning rate or raise kl_coef. "
                                   "The last checkpoint is kept")
        logs = self._mean_over_processes(self.update(batch))
        self.kl.update(stats["kl"], self.cfg.batch_size * self.processes)
        self.iteration += 1
        self.trajectories += self.cfg.batch_size * self.processes
        seconds = time.time() - start
        row = {"iteration": self.iteration, "step": self.trajectories,
               "time": seconds, "kl_coef": self.kl.value, **stats, **logs}
        row["tokens"] = int(round(stats["tokens"] * self.processes))
        row["tokens_per_s"] = row["tokens"] / max(seconds, 1e-9)
        self.history.append(row)
        return row

    def _finite_everywhere(self, loss: torch.Tensor) -> bool:
        """Whether the loss is finite in every process: they stop together, where one process stopping alone
        would leave the others waiting in the gradients' all-reduce (and the main one would not record why)."""
        return self._mean_over_processes({"finite": float(torch.isfinite(loss.detach()))})["finite"] == 1.0

    @property
    def processes(self) -> int:
        return self.accelerator.num_processes if self.accelerator is not None else 1

    def _mean_over_processes(self, values: dict) -> dict:
        if self.processes == 1:
            return values
        keys = sorted(values)
        means = self.accelerator.reduce(torch.tensor([float(values[k]) for k in keys], device=self.device), "mean")
        return dict(zip(keys, means.tolist(), strict=True))

    def run(self, on_iteration: Optional[Callable[[dict], None]] = None) -> list[dict]:
        """Train to ``cfg.iterations``, calling ``on_iteration(row)`` after each. With an ``out`` directory this
        is an ordinary run directory: ``config.yaml`` (with ``info``, e.g. the reward model's accuracy),
        ``metrics.csv`` per iteration, ``eval.csv`` (step = trajectories so far, the clean evaluation reward as
        ``mean_return``: what ``symrl report`` reads), ``samples/iter_N.jsonl`` per evaluation, ``status.json``
        and checkpoints."""
        writes = self.run_dir is not None and self.is_main
        log = evaluations = None
        try:
            if writes:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                self._write_config()
                runs.write_status(self.run_dir, "running", step=self.iteration)
                log = runs.CsvLog(self.run_dir / runs.METRICS, METRICS)
                evaluations = runs.CsvLog(self.run_dir / runs.EVAL, EVAL_COLUMNS)
            if self.iteration == 0:
                self._maybe_evaluate(evaluations if writes else None)
            while self.iteration < self.cfg.iterations:
                row = self.step()
                last = self.iteration == self.cfg.iterations
                if writes:
                    log.write(row)
                if self.iteration % self.cfg.eval_every == 0 or last:
                    self._maybe_evaluate(evaluations if writes else None)
                if on_iteration is not None and self.is_main:
                    on_iteration(row)
                if self.run_dir is not None and (self.iteration % self.cfg.checkpoint_every == 0 or last):
                    self._save()
            if writes:
                runs.write_status(self.run_dir, "finished", step=self.iteration)
        except BaseException as exc:
            if writes:
                runs.record_stop(self.run_dir, exc, self.iteration)
            raise
        finally:
            for csv_log in (log, evaluations):
                if csv_log is not None:
                    csv_log.close()
            self.release()
        return self.history

    def _maybe_evaluate(self, evaluations: Optional[runs.CsvLog]) -> None:
        """Evaluate on the main process of a run with a directory; the others wait."""
        if evaluations is not None and self.eval_prompts:
            self._evaluate_to(evaluations)
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()

    def _evaluate_to(self, evaluations: runs.CsvLog) -> None:
        row, samples = self.evaluate()
        evaluations.write(row)
        self.history_eval.append(row)
        folder = self.run_dir / SAMPLES
        folder.mkdir(exist_ok=True)
        runs.atomic_write_text(folder / f"iter_{self.iteration:04d}.jsonl",
                               "".join(json.dumps(sample, ensure_ascii=False) + "\n" for sample in samples))

    # -- checkpoints ----------------------------------------------------------------------------------------
    def _write_config(self) -> None:
        runs.write_config(self.run_dir, {**self.cfg.to_dict(), "info": self.info})

    def _random_state(self) -> dict:
        return {"generator": self.generator.get_state(), "rng": self.rng.bit_generator.state,
                "noise_rng": self.noise.rng.bit_generator.state if self.noise is not None else None}

    def _save(self) -> None:
        """Every process's random state (a collective call), saved by the main process."""
        random_states = [self._random_state()]
        if self.processes > 1:
            from accelerate.utils import gather_object  # noqa: PLC0415

            random_states = gather_object(random_states)
        if self.is_main:
            self._write_config()
            state = {"policy": _trained_state(self.policy),
                     "value_model": _trained_state(self.value_model) if self.value_model is not None else {},
                     "optimizer": self.optimizer.state_dict(), "iteration": self.iteration,
                     "trajectories": self.trajectories, "kl_coef": self.kl.value,
                     "processes": random_states}
            runs.atomic_torch_save(state, self.run_dir / runs.CHECKPOINT)
            runs.write_status(self.run_dir, "running", step=self.iteration)  # what a resume would continue from
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()

    def _restore(self) -> None:
        if self.run_dir is None:
            raise SymrlError("resume needs the run directory (out=)")
        state = runs.safe_torch_load(self.run_dir / runs.CHECKPOINT)
        if int(state["iteration"]) > self.cfg.iterations:
            raise SymrlError(f"the run in {self.run_dir} is already at iteration {int(state['iteration'])}, beyond a "
                             f"budget of {self.cfg.iterations} iterations; keep its budget or give a larger one")
        _load_trained_state(self.policy, state["policy"])
        if self.value_model is not None:
            _load_trained_state(self.value_model, state["value_model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.iteration, self.kl.value = int(state["iteration"]), float(state["kl_coef"])
        self.trajectories = int(state.get("trajectories", self.iteration * self.cfg.batch_size * len(state["processes"])))
        if self.rank < len(state["processes"]):  # more processes than saved: the new ones start from their seeds
            saved = state["processes"][self.rank]
            try:
                self.generator.set_state(saved["generator"])
            except RuntimeError:  # a CUDA generator's state on a CPU, or the other way round (device: auto)
                self.generator.manual_seed(self.cfg.seed + PROCESS_SEED_STRIDE * self.rank + self.iteration)
                warnings.warn(f"{self.run_dir} was trained on another kind of device than {self.device}; its sampling "
                              "generator cannot carry over, so sampling continues from a fresh seed", stacklevel=2)
            self.rng.bit_generator.state = saved["rng"]
            if self.noise is not None and saved["noise_rng"] is not None:
                self.noise.rng.bit_generator.state = saved["noise_rng"]
        if not self.is_main:
            return
        # drop rows a killed run logged after its checkpoint: metrics by iteration, evaluations by step
        runs.truncate_csv(self.run_dir / runs.METRICS, METRICS, self.iteration, key="iteration")
        runs.truncate_csv(self.run_dir / runs.EVAL, EVAL_COLUMNS, self.trajectories)


def _adamw(parameters: list, lr: float) -> torch.optim.Optimizer:
    """AdamW with PyTorch's fused kernel (CPU and CUDA) where the parameters allow it."""
    try:
        return torch.optim.AdamW(parameters, lr=lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(parameters, lr=lr)


def _trained_state(module: torch.nn.Module) -> dict:
    """The trained parameters (all of them, or only the LoRA adapters): what a checkpoint must hold."""
    return {name: p.detach() for name, p in module.named_parameters() if p.requires_grad}


def _load_trained_state(module: torch.nn.Module, state: dict) -> None:
    missing = set(_trained_state(module)) - set(state)
    unexpected = module.load_state_dict(state, strict=False).unexpected_keys
    if missing or unexpected:
        raise SymrlError("the checkpoint does not match this model (different model or LoRA settings); "
                         "resume with the run's own config or start a new run")


def _context_length(model: torch.nn.Module) -> Optional[int]:
    """The positions a Hugging Face model has embeddings for (GPT-2's ``n_positions``, most others'
    ``max_position_embeddings``), or None where its config does not say."""
    config = getattr(model, "config", None)
    for name in ("n_positions", "max_position_embeddings"):
        if isinstance(getattr(config, name, None), int):
            return getattr(config, name)
    return None


def _frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    reference = copy.deepcopy(model)
    for p in reference.parameters():
        p.requires_grad_(False)
    return reference
