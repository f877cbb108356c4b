"""The mini-batch gradient variance term of Prince eq. 9.9.

SGD's implicit regularizer adds (α/4B)·Σ_b ‖∇L_b − ∇L‖² (Smith et al. 2021; Prince §9.2): the
mean squared deviation of the mini-batch gradients from the full-batch one. Measured on a fixed
subset (the first ``SUBSET`` training examples) cut into consecutive batches of the run's batch
size: (1/B) Σ_b ‖g_b − ḡ‖², with ḡ the gradient of the whole subset.
"""

from __future__ import annotations

import torch
from torch import nn

from regcore.data import Split
from regcore.measures.common import fixed_subset, flat, loss_grad


def gradient_variance(batch_grads: torch.Tensor, full_grad: torch.Tensor) -> torch.Tensor:
    """(1/B) Σ_b ‖g_b − g‖² for ``batch_grads`` [B, P] and ``full_grad`` [P]."""
    return (batch_grads - full_grad).pow(2).sum(dim=1).mean()


def batch_grad_variance(model: nn.Module, split: Split, task: str, batch_size: int) -> float:
    x, y = fixed_subset(split)
    full = flat(loss_grad(model, x, y, task))
    starts = range(0, x.shape[0] - batch_size + 1, batch_size)  # whole batches only
    grads = [
        flat(loss_grad(model, x[i : i + batch_size], y[i : i + batch_size], task)) for i in starts
    ]
    if len(grads) < 2:
        return 0.0
    return float(gradient_variance(torch.stack(grads), full))
