"""Token-level PPO and symmetric PPO for Hugging Face causal language models (SPEC 5).

The policy loss is :func:`symrl.losses.symmetric_ppo_loss` with the response-token mask: the same code as
the Gymnasium trainer. Needs ``transformers`` (``pip install 'symrl[rlhf]'``).
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
