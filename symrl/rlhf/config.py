"""The settings of a language-model run (:class:`RLHFConfig`): a plain dataclass that loads no torch, so that the
command line can list its keys quickly."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

from ..config import check_ranges, check_types, coerce_values, config_from_file
from ..errors import SymrlError

ALGOS = ("ppo", "sppo", "grpo", "sgrpo", "rloo", "srloo")
CRITIC_FREE = {"grpo": "grpo", "sgrpo": "grpo", "rloo": "rloo", "srloo": "rloo"}  # algo -> group estimator
KL_MODES = ("reward", "loss")
REWARD_SCALINGS = ("group", "batch", "none")  # grpo/rloo: divide by the group's std, the batch's, or not

# upper bounds that catch a slip of the keyboard before any model loads (a context of 32k tokens is long for a run on
# one machine)
MAX_TOKENS = 32_768
MAX_BATCH = 65_536
MAX_ITERATIONS = 10_000_000


@dataclass(frozen=True)
class RLHFConfig:
    """Settings of a token-level (symmetric) PPO run; defaults follow SPEC 5's IMDB setup. Checked when built and
    immutable, as :class:`symrl.Config`: change settings with :meth:`replace`."""

    KIND: ClassVar[str] = "rlhf"  # the run protocol of symrl.runs.RunConfig
    BUDGET: ClassVar[str] = "iterations"
    RESUMABLE: ClassVar[frozenset] = frozenset({"iterations"})  # the checkpoint fixes the rest

    task: str = "custom"  # the run's name for reports (the env column of symrl.results)
    algo: str = "ppo"  # ppo, grpo, rloo, or their symmetric forms sppo, sgrpo, srloo (the task's alpha/beta)
    alpha: float = 1.0
    beta: float = 0.0
    z: float = -1.0
    reverse_mask: str = "ppo"  # the authors' mask (symmetric = scaled plain algorithm: SPEC 1.1) or "none"
    policy_coef: float = 1.0
    group_size: int = 1  # responses sampled per prompt; grpo/rloo need >= 2
    scale_rewards: str = ""  # grpo/rloo: divide by the group's std (group), the batch's (batch), not (none); "": own
    kl_mode: str = "reward"  # KL to the reference as a penalty in the reward, or as a loss term (loss: k3 estimator)
    loss_agg_mode: str = "token-mean"  # token-mean, seq-mean-token-mean, seq-mean-token-sum, seq-mean-token-sum-norm
    iterations: int = 60  # each samples batch_size responses, then updates
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
    nll_coef: float = 0.0  # auxiliary NLL on reference texts (the imdb and tldr presets: 0.1, the authors' target_coef)
    nll_batch_size: int = 8
    reward_noise: Optional[str] = None  # training only: flip:P (sign of the centred score), gaussian:SIGMA, verifier:FP/FN
    eval_every: int = 10  # iterations between evaluations on the held-out prompts (and one before training)
    eval_prompts: int = 64
    seed: int = 0
    checkpoint_every: int = 10
    # what symrl.rlhf.tasks loads (hub names or local folders; empty: the task's default)
    policy_model: str = ""
    reward_model: str = ""
    reward_label: str = ""
    dataset: str = ""
    lora_r: int = 0  # > 0: train LoRA adapters (peft); the reference is the policy with its adapters off
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    load_in_4bit: bool = False  # CUDA only (bitsandbytes)
    share_body: bool = False  # the critic shares the policy's transformer body instead of a copy
    device: str = "auto"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "RLHFConfig":
        """Raise :class:`SymrlError` on any value that cannot work, naming the fix (done when a config is built)."""
        from ..losses import LOSS_AGG_MODES  # noqa: PLC0415 (torch: loaded when a run starts, not for --help)
        from .rewards import parse_reward_noise  # noqa: PLC0415

        check_types(self)
        if self.algo not in ALGOS:
            raise SymrlError(f"algo must be one of {', '.join(ALGOS)} (s = symmetric form), got {self.algo!r}")
        for name, allowed in (("reverse_mask", ("ppo", "none")), ("kl_mode", KL_MODES),
                              ("loss_agg_mode", LOSS_AGG_MODES), ("scale_rewards", ("", *REWARD_SCALINGS))):
            if getattr(self, name) not in allowed:
                raise SymrlError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}, got {getattr(self, name)!r}")
        if self.group_size < 1 or (self.critic_free and self.group_size < 2):
            raise SymrlError(f"group_size {self.group_size} is too small: {self.algo} compares each response with the "
                             "others to the same prompt; set --set group_size=4 (or more)" if self.critic_free else
                             f"group_size must be positive, got {self.group_size}")
        if self.batch_size % self.group_size:
            raise SymrlError(f"batch_size {self.batch_size} must be a multiple of group_size {self.group_size} "
                             "(batch_size / group_size prompts per iteration)")
        if self.scale_rewards and not self.critic_free:
            raise SymrlError("scale_rewards applies to grpo/rloo only; PPO normalises its GAE advantages per minibatch")
        check_ranges(self, positive_finite=("learning_rate", "clip_range", "temperature", "kl_horizon"),
                     positive=("max_grad_norm", "value_clip", "kl_stop", "kl_target"),
                     non_negative=("seed", "alpha", "beta", "policy_coef", "kl_coef", "vf_coef", "nll_coef", "min_new_tokens",
                                   "top_k", "lora_r", "lora_dropout"))
        if not 0.0 <= self.lam <= 1.0:
            raise SymrlError(f"lam (GAE's lambda) must lie in [0, 1], got {self.lam}")
        if self.batch_size % self.minibatch_size:
            raise SymrlError(f"batch_size {self.batch_size} must be a multiple of minibatch_size {self.minibatch_size}")
        if self.min_new_tokens > self.max_new_tokens:
            raise SymrlError("min_new_tokens cannot exceed max_new_tokens")
        for name in ("iterations", "batch_size", "minibatch_size", "epochs", "max_new_tokens", "max_prompt_tokens",
                     "eval_every", "eval_prompts", "checkpoint_every", "nll_batch_size"):
            if getattr(self, name) <= 0:
                raise SymrlError(f"{name} must be positive, got {getattr(self, name)}")
        for name, most in (("max_new_tokens", MAX_TOKENS), ("max_prompt_tokens", MAX_TOKENS), ("batch_size", MAX_BATCH),
                           ("group_size", MAX_BATCH), ("iterations", MAX_ITERATIONS), ("eval_prompts", MAX_BATCH)):
            if getattr(self, name) > most:
                raise SymrlError(f"{name} {getattr(self, name):,} is above symrl's limit of {most:,}; a mistake? "
                                 f"(set a smaller one with --set {name}=N)")
        object.__setattr__(self, "_noise", parse_reward_noise(self.reward_noise))  # typed, parsed once
        return self

    @property
    def reward_noise_spec(self):
        """``reward_noise`` parsed: a :class:`symrl.noise.NoiseSpec` (flip, gaussian), a
        :class:`~symrl.rlhf.rewards.VerifierNoiseSpec`, or None when clean."""
        return self._noise

    @property
    def critic_free(self) -> bool:
        """GRPO or RLOO (or a symmetric form): group baselines instead of a value model."""
        return self.algo in CRITIC_FREE

    @property
    def reward_scaling(self) -> str:
        """``scale_rewards`` resolved: GRPO divides by the group's std, RLOO does not, unless set."""
        return self.scale_rewards or ("group" if CRITIC_FREE.get(self.algo) == "grpo" else "none")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_file(cls, path: str | Path) -> "RLHFConfig":
        """Read a run's ``config.yaml`` back (without ``info``, which describes the loaded task)."""
        return config_from_file(path, cls, drop=("info",))

    def replace(self, **overrides: Any) -> "RLHFConfig":
        """A copy with ``overrides`` applied (checked and converted like ``--set``), as ``Config.replace``."""
        return RLHFConfig(**{**self.to_dict(), **coerce_values(overrides, RLHFConfig)})
