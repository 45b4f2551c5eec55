"""How many threads a run uses: PyTorch's intra-op threads, NumPy's BLAS threads, and the processes its training
envs are split over.

Small MLPs run fastest on one PyTorch thread (the per-op cost of a thread pool outweighs the arithmetic);
convolutions use every core. A run's ``torch_threads`` setting (> 0) overrides both. An MLP run also limits NumPy's
BLAS (which the NumPy engine, :mod:`symrl.fast`, multiplies with) to one thread: its matrices are too small to gain from a second,
and BLAS threads that share a core with the environment workers wait for each other (a 64x400 by 400x128 product took
15 ms instead of 0.1 ms on a busy 2-core machine). A process may train an MLP and then a CNN (a script, a notebook, a
sweep worker): the CNN run then gets back the thread counts symrl had lowered.

Runs that share the machine share its cores: a run splits its training environments over as many processes as
there are cores that other symrl runs of the same user have not claimed (:func:`claim_cores`), at least one. Two
split runs on two cores would each spin-wait for a worker that the other run keeps off its core (measured: an A2C
HalfCheetah run beside two busy processes trained at 2,297 steps/s split over 2 processes and 3,689 in one).
"""

from __future__ import annotations

import itertools
import os
import stat
import tempfile
from pathlib import Path
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


CLAIMS = Path(tempfile.gettempdir()) / f"symrl-cores-{getattr(os, 'getuid', lambda: 0)()}"  # a file per claim
_claim_ids = itertools.count()


class CoreClaim:
    """Cores a run holds for its training environments' processes (``granted``), visible to other runs until
    :meth:`release` (or this process's end: a claim of a process that is gone does not count)."""

    def __init__(self, granted: int, path: Optional[Path]):
        self.granted, self._path = granted, path

    def release(self) -> None:
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def claim_cores(wanted: int, fixed: bool = False) -> CoreClaim:
    """Claim cores for a run's environment processes: ``wanted``, but no more than the cores that live claims of
    other runs leave free, and at least 1; exactly ``wanted`` when ``fixed`` (the user set ``torch_threads``).
    Best effort: where the claims folder cannot be used, the run gets ``wanted`` and claims nothing."""
    try:
        import fcntl  # noqa: PLC0415  (POSIX; elsewhere every run gets what it wants)
    except ImportError:
        return CoreClaim(wanted, None)
    try:
        CLAIMS.mkdir(mode=0o700, exist_ok=True)
        if not _private(CLAIMS):  # in a shared temp folder: someone else's folder (or a link) is not used
            return CoreClaim(wanted, None)
        with open(CLAIMS / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one run at a time counts and claims
            granted = wanted if fixed else max(1, min(wanted, machine_cores() - _claimed()))
            path = CLAIMS / f"{os.getpid()}-{next(_claim_ids)}"
            path.write_text(str(granted))
            return CoreClaim(granted, path)
    except OSError:
        return CoreClaim(wanted, None)


def _private(folder: Path) -> bool:
    """A real folder (not a link) of this user that nobody else may write in."""
    info = os.lstat(folder)
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o022


def _claimed() -> int:
    """Cores claimed by live processes (a claim whose process is gone is removed)."""
    total = 0
    for path in CLAIMS.iterdir():
        pid, _, _ = path.name.partition("-")
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            total += int(path.read_text() or 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except (PermissionError, ValueError, OSError):  # another user's process with our pid: count nothing
            continue
    return total
