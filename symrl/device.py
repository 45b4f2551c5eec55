"""The torch device a run asks for (``cpu``, ``cuda``, ``cuda:N`` or ``auto``), shared by the Gymnasium and the
language-model trainers so both refuse an unusable device the same way, before any work starts."""

from __future__ import annotations

import torch

from .errors import SymrlError


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; asking for CUDA without it is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SymrlError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SymrlError(f"device {name!r} requested but torch sees no CUDA GPU; use --set device=cpu")
    return device
