"""RLHF tasks: what each loads (policy, reward, prompts, references) and its preset.

- ``sentiment``: the offline default. SmolLM2-135M continues the first words of held-out human-rated
  movie-review snippets; the reward is the positive-class probability of a sentence classifier trained on
  the other snippets (:mod:`symrl.rlhf.sentiment`). Assets come from PyPI once (:mod:`symrl.rlhf.assets`).
- ``arithmetic``: a verifiable reward, offline. The same SmolLM2-135M completes two-shot ``a + b =`` prompts; the
  reward is an exact check of the sum (:mod:`symrl.rlhf.verifiable`), so evaluation reports the clean pass rate.
- ``imdb``: SPEC 5's IMDB setup (hub names; local folders through ``policy_model``/``reward_model``/``dataset``).
- ``tldr``: SPEC 5's TL;DR summarisation setup (LoRA, optional 4-bit); a reward model must be given.

A preset is a set of :class:`~symrl.rlhf.trainer.RLHFConfig` values (``common``); the symmetric algorithms
(``sppo``, ``sgrpo``, ``srloo``) add the task's symmetric weights (``sppo``), and the critic-free ones (GRPO,
RLOO) add :data:`CRITIC_FREE_DEFAULTS` and then the task's ``critic_free`` values. :func:`make_rlhf_config`
resolves task -> algorithm -> user overrides, and :func:`load_task` builds the :class:`TaskSetup` the trainer
takes.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch

from ..config import coerce_values
from ..device import resolve_device
from ..errors import SymrlError
from .config import CRITIC_FREE, RLHFConfig
from .generation import token_lengths
from .hub import load_classifier, load_dataset, load_policy, load_tokenizer
from .rewards import ClassifierReward, RewardFn

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # sized for a 2-core CPU: LoRA on SmolLM2-135M, ~16 s per iteration (see docs/rlhf.md)
    "sentiment": {
        "common": {"iterations": 15, "batch_size": 16, "minibatch_size": 8, "epochs": 2, "learning_rate": 3e-4,
                   "lora_r": 16, "lora_alpha": 32.0, "kl_coef": 0.02, "max_new_tokens": 16, "min_new_tokens": 4,
                   "top_k": 50, "max_prompt_tokens": 32, "gamma": 1.0, "lam": 0.95, "eval_every": 5, "eval_prompts": 32,
                   "checkpoint_every": 5},
        "sppo": {"alpha": 0.5, "beta": 0.4, "z": -1.0},
    },
    # verifiable reward (symrl.rlhf.verifiable): SmolLM2-135M adds two numbers, scored by an exact check; 2-core CPU
    "arithmetic": {
        "common": {"iterations": 30, "batch_size": 32, "minibatch_size": 16, "epochs": 2, "learning_rate": 3e-4,
                   "lora_r": 16, "lora_alpha": 32.0, "kl_coef": 0.02, "max_new_tokens": 5, "min_new_tokens": 0,
                   "temperature": 1.0, "top_k": 0, "max_prompt_tokens": 32, "gamma": 1.0, "lam": 0.95, "eval_every": 5,
                   "eval_prompts": 128, "checkpoint_every": 5},
        "sppo": {"alpha": 0.5, "beta": 0.4, "z": -1.0},
    },
    # SPEC 5, IMDB positive sentiment
    "imdb": {
        "common": {"iterations": 60, "batch_size": 112, "minibatch_size": 28, "epochs": 5, "learning_rate": 5e-6,
                   "kl_coef": 0.001, "max_new_tokens": 48, "top_k": 50, "max_prompt_tokens": 64, "gamma": 0.99,
                   "lam": 0.95, "eval_every": 10, "eval_prompts": 112, "nll_coef": 0.1},  # the authors' target_coef
        "sppo": {"alpha": 0.5, "beta": 0.4, "z": -1.0},
    },
    # SPEC 5, TL;DR summarisation (GPT-J 6B SFT: 4-bit and LoRA on a GPU)
    "tldr": {
        "common": {"iterations": 60, "batch_size": 64, "minibatch_size": 16, "epochs": 4, "learning_rate": 5e-6,
                   "kl_coef": 0.002, "max_new_tokens": 50, "top_k": 0, "max_prompt_tokens": 512, "gamma": 1.0,
                   "lam": 0.95, "vf_coef": 0.1, "lora_r": 8, "lora_alpha": 64.0, "lora_dropout": 0.1,
                   "eval_every": 10, "eval_prompts": 64, "nll_coef": 0.1},
        "sppo": {"alpha": 0.5, "beta": 0.2, "z": -1.0},
    },
}
# GRPO/RLOO where a task says nothing else: groups of 4 responses; the KL to the reference as a loss term (k3), as
# GRPO and veRL's use_kl_loss do
CRITIC_FREE_DEFAULTS: dict[str, Any] = {"group_size": 4, "kl_mode": "loss"}
SYMMETRIC = ("sppo", "sgrpo", "srloo")
DEFAULT_MODELS = {
    "imdb": {"policy_model": "lvwerra/gpt2-imdb", "reward_model": "lvwerra/distilbert-imdb", "reward_label": "POSITIVE",
             "dataset": "imdb"},
    "tldr": {"policy_model": "CarperAI/openai_summarize_tldr_sft", "dataset": "CarperAI/openai_summarize_tldr"},
}
TASKS = tuple(PRESETS)


@dataclass
class TaskSetup:
    """Everything a run of a task needs besides its config."""

    policy: Any
    tokenizer: Any
    reward_fn: RewardFn  # clean; the trainer adds the configured training noise itself
    prompts: list[str]
    eval_prompts: list[str]
    eval_references: list[str] = field(default_factory=list)  # human continuations/summaries: win rate, perplexity
    reference_texts: list[str] = field(default_factory=list)  # texts of the auxiliary NLL loss
    info: dict = field(default_factory=dict)  # e.g. the reward model's held-out accuracy


def _check_task(task: str) -> None:
    if task not in PRESETS:
        close = difflib.get_close_matches(task, TASKS, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise SymrlError(f"unknown task {task!r}; {hint}choose one of {', '.join(TASKS)}")


def make_rlhf_config(task: str = "sentiment", algo: str = "ppo", **overrides: Any) -> RLHFConfig:
    """The task's preset, then the algorithm's symmetric weights (``sppo``), then ``overrides`` (checked and
    converted like ``--set`` values: unknown keys and wrong types are one-line errors)."""
    _check_task(task)
    preset = PRESETS[task]
    critic_free = {**CRITIC_FREE_DEFAULTS, **preset.get("critic_free", {})} if algo in CRITIC_FREE else {}
    values = {**DEFAULT_MODELS.get(task, {}), **preset["common"], **critic_free,
              **(preset["sppo"] if algo in SYMMETRIC else {}), **coerce_values(overrides, RLHFConfig),
              "task": task, "algo": algo}
    return RLHFConfig(**values)


def load_task(cfg: RLHFConfig, log: Callable[[str], None] = print) -> TaskSetup:
    """Load the policy, reward, prompts and references of ``cfg.task``."""
    _check_task(cfg.task)
    device = resolve_device(cfg.device)  # before minutes of loading
    return {"sentiment": _sentiment, "arithmetic": _arithmetic, "imdb": _imdb, "tldr": _tldr}[cfg.task](cfg, device, log)


def _policy(cfg: RLHFConfig, name: str, device: torch.device, pad_with_eos: bool):
    tokenizer = load_tokenizer(name, pad_with_eos=pad_with_eos)
    if tokenizer.pad_token is None:
        raise SymrlError(f"the tokenizer of {name!r} has neither a pad nor an end-of-sequence token to pad batches with; "
                         "give it a pad token (tokenizer.add_special_tokens) and save it")
    policy = load_policy(name, device, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.load_in_4bit)
    return policy, tokenizer


def _fitting(tokenizer, rows: list[tuple[str, str]], limit: int) -> list[tuple[str, str]]:
    """The (prompt, reference) rows whose prompt has at most ``limit`` tokens."""
    lengths = token_lengths(tokenizer, [prompt for prompt, _ in rows])
    return [row for row, length in zip(rows, lengths, strict=True) if length <= limit]


def _split(rows: list, eval_count: int) -> tuple[list, list]:
    if len(rows) <= eval_count:
        raise SymrlError(f"only {len(rows)} prompts, not enough for {eval_count} evaluation prompts; lower eval_prompts")
    return rows[:-eval_count], rows[-eval_count:]


# -- sentiment: offline, from PyPI packages ------------------------------------------------------------------
def _sentiment(cfg: RLHFConfig, device: torch.device, log: Callable[[str], None]) -> TaskSetup:
    from .assets import prepare_sentiment, sentiment_dir  # noqa: PLC0415
    from .sentiment import SentenceClassifier, split_prompt  # noqa: PLC0415

    if cfg.dataset:
        raise SymrlError("the sentiment task brings its own prompts; drop --set dataset=... (or use --task imdb or tldr)")
    root = sentiment_dir()
    manifest = prepare_sentiment(log=log)
    policy, tokenizer = _policy(cfg, cfg.policy_model or str(root / manifest["policy"]), device, pad_with_eos=True)
    info: dict = {}
    if cfg.reward_model:
        model, reward_tokenizer = load_classifier(cfg.reward_model, device)
    else:
        model, reward_tokenizer = SentenceClassifier.load(root / manifest["reward_model"])
        model.to(device)
        meta = json.loads((root / manifest["reward_model"] / "reward.json").read_text())
        info = {"reward_model_heldout_accuracy": meta["heldout_accuracy"],
                "reward_model_heldout_examples": meta["heldout_examples"]}
    reward = ClassifierReward(model, reward_tokenizer, cfg.reward_label or "positive")
    data = json.loads((root / manifest["snippets"]).read_text())
    # prompts from the snippets the reward model never saw; the policy writes the rest of each snippet
    rows = [split_prompt(text) for _, text in data["heldout"]]
    rows = _fitting(tokenizer, rows, cfg.max_prompt_tokens)
    train, held = _split(rows, cfg.eval_prompts)
    return TaskSetup(policy, tokenizer, reward, [p for p, _ in train], [p for p, _ in held], [c for _, c in held],
                     reference_texts=[text for _, text in data["train"]], info=info)


# -- arithmetic: a verifiable reward, offline -------------------------------------------------------------
def _arithmetic(cfg: RLHFConfig, device: torch.device, log: Callable[[str], None]) -> TaskSetup:
    from .assets import prepare_policy  # noqa: PLC0415
    from .verifiable import arithmetic_task  # noqa: PLC0415

    if cfg.dataset or cfg.reward_model:
        raise SymrlError("the arithmetic task brings its own prompts and exact-check reward; drop --set dataset=... and "
                         "--set reward_model=...")
    task = arithmetic_task()
    train, held = task.split(cfg.eval_prompts)
    policy, tokenizer = _policy(cfg, cfg.policy_model or str(prepare_policy(log=log)), device, pad_with_eos=True)
    return TaskSetup(policy, tokenizer, task.check, train, held)


# -- imdb: SPEC 5 ---------------------------------------------------------------------------------------
def _first_half(tokenizer, text: str, limit: int) -> Optional[tuple[str, str]]:
    """The first half of ``text``'s tokens (at most ``limit``) and the rest, as strings."""
    ids = tokenizer(text)["input_ids"]
    cut = min(len(ids) // 2, limit)
    if cut == 0:
        return None
    prompt = tokenizer.decode(ids[:cut])
    if len(tokenizer(prompt)["input_ids"]) > limit:  # decode/encode need not round-trip exactly
        return None
    # byte-level BPE decodes a prefix of the text exactly; otherwise fall back to the decoded rest
    return prompt, text[len(prompt):] if text.startswith(prompt) else " " + tokenizer.decode(ids[cut:])


def _imdb(cfg: RLHFConfig, device: torch.device, log: Callable[[str], None]) -> TaskSetup:
    policy, tokenizer = _policy(cfg, cfg.policy_model, device, pad_with_eos=True)
    model, reward_tokenizer = load_classifier(cfg.reward_model, device)
    reward = ClassifierReward(model, reward_tokenizer, cfg.reward_label or 1)

    def halves(data, count: int, seed: int) -> list[tuple[str, str]]:
        if "text" not in data.column_names:
            raise SymrlError(f"the data set {cfg.dataset!r} has no 'text' column (columns: {data.column_names})")
        order = np.random.default_rng(seed).permutation(len(data))[:count]
        texts = [str(data[int(i)]["text"]).replace("<br />", " ") for i in order]
        return [h for h in (_first_half(tokenizer, t, cfg.max_prompt_tokens) for t in texts) if h]

    split = load_dataset(cfg.dataset)
    train = halves(split("train"), 4096, 0)
    held = halves(split("test"), cfg.eval_prompts, 1)
    return TaskSetup(policy, tokenizer, reward, [p for p, _ in train], [p for p, _ in held], [c for _, c in held],
                     reference_texts=[p + c for p, c in train])


# -- tldr: SPEC 5 ---------------------------------------------------------------------------------------
def _tldr(cfg: RLHFConfig, device: torch.device, log: Callable[[str], None]) -> TaskSetup:
    if not cfg.reward_model:
        raise SymrlError("the tldr task needs a reward model: --set reward_model=PATH (a sequence classifier or a LoRA "
                         "adapter folder trained on summary preferences, e.g. CarperAI/openai_summarize_comparisons)")
    policy, tokenizer = _policy(cfg, cfg.policy_model, device, pad_with_eos=True)
    model, reward_tokenizer = load_classifier(cfg.reward_model, device)
    reward = ClassifierReward(model, reward_tokenizer, cfg.reward_label or 0)

    def pairs(data, split: str, count: int) -> list[tuple[str, str]]:
        missing = {"prompt", "label"} - set(data.column_names)
        if missing:
            raise SymrlError(f"the data set {cfg.dataset!r} lacks the columns {sorted(missing)} (it has {data.column_names})")
        rows = [(str(r["prompt"]), " " + str(r["label"]).strip()) for r in data.select(range(min(count, len(data))))]
        kept = _fitting(tokenizer, rows, cfg.max_prompt_tokens)
        if len(kept) < len(rows):
            log(f"tldr: dropped {len(rows) - len(kept)} {split} posts longer than max_prompt_tokens={cfg.max_prompt_tokens}")
        return kept

    split = load_dataset(cfg.dataset)
    train = pairs(split("train"), "train", 20_000)
    held = pairs(split("valid"), "valid", cfg.eval_prompts)
    return TaskSetup(policy, tokenizer, reward, [p for p, _ in train], [p for p, _ in held], [s for _, s in held],
                     reference_texts=[p + s for p, s in train])


def describe(setup: TaskSetup) -> str:
    """One line for the run's output: prompts and, when known, the reward model's held-out accuracy."""
    accuracy = setup.info.get("reward_model_heldout_accuracy")
    text = f"{len(setup.prompts)} training prompts, {len(setup.eval_prompts)} evaluation prompts"
    if accuracy is not None:
        text += (f"; reward model held-out accuracy {accuracy:.3f} on "
                 f"{setup.info.get('reward_model_heldout_examples', '?')} unseen labelled examples")
    return text
