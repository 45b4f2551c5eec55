"""How many threads a run uses: PyTorch's intra-op threads, NumPy's BLAS threads, and the processes its training
envs are split over.

Small MLPs run fastest on one PyTorch thread (the per-op cost of a thread pool outweighs the arithmetic);
convolutions use every core. A run's ``torch_threads`` setting (> 0) overrides both. An MLP run also limits NumPy's
BLAS (which the NumPy engine, :mod:`symrl.fast`, multiplies with) to one thread: its matrices are too small to gain from a second,
and BLAS threads that share a core with the environment workers wait for each other (a 64x400 by 400x128 product took
15 ms instead of 0.1 ms on a busy 2-core machine). A process may train an MLP and then a CNN (a script, a notebook, a
sweep worker): the CNN run then gets back the thread counts symrl had lowered.
"""

from __future__ import annotations

from typing import Optional

import torch
from threadpoolctl import threadpool_limits

_before_mlp: Optional[int] = None  # PyTorch's thread count before symrl set 1 for an MLP run
_blas_limit: Optional[threadpool_limits] = None  # NumPy's BLAS held at one thread for MLP runs (restorable)


def available_threads(torch_threads: int = 0) -> int:
    """Threads for a CNN run's update, and the number of processes a run's training envs are split over:
    ``torch_threads`` when it is set (> 0), else PyTorch's count (the one before symrl lowered it for an MLP)."""
    if torch_threads > 0:
        return torch_threads
    current = torch.get_num_threads()
    return _before_mlp if _before_mlp is not None and current == 1 else current


def set_torch_threads(torch_threads: int, cnn: bool) -> None:
    """PyTorch's threads for this run, and NumPy's BLAS threads: as many as PyTorch's for an MLP run (one unless
    ``torch_threads`` > 0 says otherwise), BLAS's own count for a CNN run."""
    global _before_mlp
    small_mlp = not cnn and torch_threads <= 0
    if small_mlp and torch.get_num_threads() != 1:
        _before_mlp = torch.get_num_threads()
    threads = 1 if small_mlp else available_threads(torch_threads)
    _limit_blas(None if cnn else threads)  # first: giving BLAS back also resets the OpenMP count threadpoolctl saw
    torch.set_num_threads(threads)


def _limit_blas(threads: Optional[int]) -> None:
    """Hold NumPy's BLAS at ``threads`` threads; ``None`` gives it back its own count."""
    global _blas_limit
    if _blas_limit is not None:
        _blas_limit.restore_original_limits()
        _blas_limit = None
    if threads is not None:
        _blas_limit = threadpool_limits(limits=threads, user_api="blas")
