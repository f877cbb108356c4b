"""The mini-batch gradient variance term of Prince eq. 9.9.

SGD's implicit regularizer adds (α/4B)·Σ_b ‖∇L_b − ∇L‖² (Smith et al. 2021; Prince §9.2.2): the
mean squared deviation of the mini-batch gradients from the full-batch one. Measured on
whole batches of the run's batch size (``batch_index``), drawn without replacement from the
training split by a generator of the measurement's own (same seed every call, so epochs compare
and training's RNG is untouched): at least ``BATCHES`` batches and at least ``SUBSET`` examples
when the split has them. The value is (1/K) Σ_b ‖g_b − ḡ‖², with ḡ the gradient on the K
batches together (the mean of the g_b, the losses being batch means). The cost is bounded by
max(SUBSET, BATCHES·B) examples' gradients. Fewer than two whole batches in the split: 0.0.
"""

from __future__ import annotations

import torch
from torch import nn

from regcore.data import Split
from regcore.measures.common import SUBSET, flat, loss_grad

#: at least this many whole batches are drawn (when the split holds them)
BATCHES = 8
#: the draw's own seed
SEED = 0


def gradient_variance(batch_grads: torch.Tensor, full_grad: torch.Tensor) -> torch.Tensor:
    """(1/B) Σ_b ‖g_b − g‖² for ``batch_grads`` [B, P] and ``full_grad`` [P]."""
    return (batch_grads - full_grad).pow(2).sum(dim=1).mean()


def batch_index(n: int, batch_size: int) -> torch.Tensor:
    """[K, batch_size] row indices: K = min(n, max(SUBSET, BATCHES·batch_size)) // batch_size
    whole batches, without replacement, from a fixed-seed permutation of range(n)."""
    k = min(n, max(SUBSET, BATCHES * batch_size)) // batch_size
    g = torch.Generator().manual_seed(SEED)
    return torch.randperm(n, generator=g)[: k * batch_size].reshape(k, batch_size)


def batch_grad_variance(model: nn.Module, split: Split, task: str, batch_size: int) -> float:
    rows = batch_index(len(split), batch_size).to(split.x.device)
    if rows.shape[0] < 2:
        return 0.0
    grads = torch.stack([flat(loss_grad(model, split.x[r], split.y[r], task)) for r in rows])
    return float(gradient_variance(grads, grads.mean(dim=0)))
