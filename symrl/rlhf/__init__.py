"""Token-level PPO and symmetric PPO for Hugging Face causal language models (SPEC 5).

The policy loss is :func:`symrl.losses.symmetric_ppo_loss` with the response-token mask: the same code as
the Gymnasium trainer. Needs ``transformers`` (``pip install 'symrl[rlhf]'``).
"""

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

# loaded on first use: `symrl.rlhf.config` (the settings) imports no torch
_EXPORTS = {
    "Generated": "generation", "Sampling": "generation", "generate": "generation", "policy_logits": "generation",
    "score": "generation", "AdaptiveKL": "kl", "FixedKL": "kl", "ValueModel": "models", "response_values": "models",
    "value_model_for": "models", "RLHFConfig": "config", "RLHFTrainer": "trainer", "Rollout": "trainer",
}
__all__ = ["AdaptiveKL", "FixedKL", "Generated", "RLHFConfig", "RLHFTrainer", "Rollout", "Sampling", "ValueModel",
           "generate", "policy_logits", "response_values", "score", "value_model_for"]

if TYPE_CHECKING:
    from .config import RLHFConfig
    from .generation import Generated, Sampling, generate, policy_logits, score
    from .kl import AdaptiveKL, FixedKL
    from .models import ValueModel, response_values, value_model_for
    from .trainer import RLHFTrainer, Rollout


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        if importlib.util.find_spec(f"{__name__}.{name}") is None:
            raise AttributeError(f"module 'symrl.rlhf' has no attribute {name!r}")
        return importlib.import_module(f".{name}", __name__)  # a submodule, as an eager import made it available
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted({*globals(), *_EXPORTS})
