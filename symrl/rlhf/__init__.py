"""Token-level PPO and symmetric PPO for Hugging Face causal language models (SPEC 5).

The policy loss is :func:`symrl.losses.symmetric_ppo_loss` with the response-token mask: the same code as
the Gymnasium trainer. Needs ``transformers`` (``pip install 'symrl[rlhf]'``).
"""

from .generation import Generated, Sampling, generate, policy_logits, score
from .kl import AdaptiveKL, FixedKL
from .models import ValueModel, response_values, value_model_for
from .trainer import RLHFConfig, RLHFTrainer, Rollout

__all__ = ["AdaptiveKL", "FixedKL", "Generated", "RLHFConfig", "RLHFTrainer", "Rollout", "Sampling", "ValueModel",
           "generate", "policy_logits", "response_values", "score", "value_model_for"]
