"""Helpers shared by the measurements: a fixed subset and a gradient that leaves no trace."""

from __future__ import annotations

import torch
from torch import nn

from regcore.data import Split
from regcore.training.metrics import data_loss

#: examples of the training split that the subset measurements use (the first ones: no RNG)
SUBSET = 512


def fixed_subset(split: Split, n: int = SUBSET) -> tuple[torch.Tensor, torch.Tensor]:
    return split.x[:n], split.y[:n]


def parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def loss_grad(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: str, create_graph: bool = False
) -> list[torch.Tensor]:
    """∇ of the mean data loss on (x, y), by ``autograd.grad`` (``.grad`` stays untouched)."""
    params = parameters(model)
    with torch.enable_grad():
        loss = data_loss(model(x), y, task)
        grads = torch.autograd.grad(loss, params, create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])
