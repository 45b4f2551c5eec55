"""How many threads a run uses: PyTorch's intra-op threads, and the processes its training envs are split over.

Small MLPs run fastest on one PyTorch thread (the per-op cost of a thread pool outweighs the arithmetic);
convolutions use every core. ``cfg.torch_threads`` overrides both. A process may train an MLP and then a CNN
(a script, a notebook, a sweep worker): the CNN run then gets back the thread count symrl had lowered.
"""

from __future__ import annotations

from typing import Optional

import torch

from .config import Config

_before_mlp: Optional[int] = None  # PyTorch's thread count before symrl set 1 for an MLP run


def available_threads(cfg: Config) -> int:
    """Threads for a CNN run's update, and the number of processes a run's training envs are split over."""
    if cfg.torch_threads > 0:
        return cfg.torch_threads
    current = torch.get_num_threads()
    return _before_mlp if _before_mlp is not None and current == 1 else current


def set_torch_threads(cfg: Config, cnn: bool) -> None:
    global _before_mlp
    if cnn or cfg.torch_threads > 0:
        torch.set_num_threads(available_threads(cfg))
        return
    if torch.get_num_threads() != 1:
        _before_mlp = torch.get_num_threads()
    torch.set_num_threads(1)
