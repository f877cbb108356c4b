"""‖∇L(w)‖ of the mean data loss over the whole training split (the full-batch gradient).

Computed in chunks, weighted by their sizes, so that it is the exact full-batch gradient.
"""

from __future__ import annotations

import torch
from torch import nn

from regcore.data import Split
from regcore.measures.common import flat, loss_grad

CHUNK = 4096


def full_batch_grad(model: nn.Module, split: Split, task: str) -> torch.Tensor:
    n = len(split)
    total: torch.Tensor | None = None
    for i in range(0, n, CHUNK):
        x, y = split.x[i : i + CHUNK], split.y[i : i + CHUNK]
        g = flat(loss_grad(model, x, y, task)) * (x.shape[0] / n)
        total = g if total is None else total + g
    assert total is not None
    return total


def grad_norm(model: nn.Module, split: Split, task: str) -> float:
    return float(torch.linalg.vector_norm(full_batch_grad(model, split, task)))
