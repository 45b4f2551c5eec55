"""The value model: a transformer body with a scalar head, separate from the policy by default.

The authors' setup trains a separate critic (a copy of the policy's network with a value head); sharing the
policy's body is the cheaper option (one body, both losses through it).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .decoder import forward
from .generation import position_ids, response_slice


class ValueModel(nn.Module):
    """``V(prefix)`` at every position of a sequence: ``body(...).last_hidden_state @ head``."""

    def __init__(self, body: nn.Module, hidden_size: int):
        super().__init__()
        self.body = body
        self.head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        hidden = forward(self.body, input_ids, attention_mask, position_ids)[0]
        return self.head(hidden.float()).squeeze(-1)


def value_model_for(policy: nn.Module, share_body: bool = False) -> ValueModel:
    """A critic for a Hugging Face causal LM: a copy of its body (default) or the body itself (``share_body``).
    Under LoRA (``peft``) the body carries the adapters, so a copied critic trains its own adapters."""
    model = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
    body = model.base_model
    hidden = model.config.hidden_size if hasattr(model.config, "hidden_size") else model.config.n_embd
    return ValueModel(body if share_body else copy.deepcopy(body), hidden)


def response_values(value_model: ValueModel, batch) -> torch.Tensor:
    """Value of the state before each response token, ``[B, T]``, 0 on padding."""
    values = value_model(batch.sequences, batch.attention_mask, position_ids(batch.attention_mask))
    values = values[:, response_slice(batch)]
    return values * batch.response_mask.to(values.dtype)
