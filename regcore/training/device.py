"""Device selection and CPU thread count."""

from __future__ import annotations

import os

import torch
from torch import nn

#: below this many parameters one thread beats several: per-op overhead dominates and threads
#: only add synchronization (measured 5-25x on a 2-core box for MNIST-1D MLPs).
SMALL_MODEL_PARAMS = 1_000_000


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` is CUDA when present, else CPU; ``cuda``/``cuda:N`` must exist."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailable(
                f"device {name!r} was asked for, but CUDA is not available here"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceUnavailable(
                f"device {name!r} was asked for, but only {torch.cuda.device_count()} GPU(s) exist"
            )
    return device


def choose_threads(model: nn.Module, device: torch.device) -> int:
    """One thread for small models (or when a GPU does the work), else every core."""
    if device.type == "cuda":
        return 1
    n_params = sum(p.numel() for p in model.parameters())
    if n_params < SMALL_MODEL_PARAMS:
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class DeviceUnavailable(RuntimeError):
    """The spec asks for a device this machine does not have."""
