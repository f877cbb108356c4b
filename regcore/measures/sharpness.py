"""Sharpness: the top eigenvalue of the Hessian of the training loss.

Power iteration on Hessian-vector products (Pearlmutter 1994; double backprop), on a fixed subset
(the first ``SUBSET`` training examples) for a fixed number of iterations from a fixed start
vector, so the number is a deterministic function of the weights. Returns the Rayleigh quotient
vᵀHv of the last iterate: the eigenvalue of largest magnitude, which near a minimum is the
largest curvature.
"""

from __future__ import annotations

import torch
from torch import nn

from regcore.data import Split
from regcore.measures.common import fixed_subset, flat, loss_grad, parameters

ITERATIONS = 20


def power_iteration(hvp, v: torch.Tensor, iterations: int) -> torch.Tensor:
    """The Rayleigh quotient vᵀHv after ``iterations`` steps v ← Hv/‖Hv‖."""
    v = v / torch.linalg.vector_norm(v)
    eig = torch.zeros((), device=v.device)
    for _ in range(iterations):
        hv = hvp(v)
        eig = torch.dot(v, hv)
        v = hv / (torch.linalg.vector_norm(hv) + 1e-12)
    return eig


def sharpness(model: nn.Module, split: Split, task: str, iterations: int = ITERATIONS) -> float:
    x, y = fixed_subset(split)
    params = parameters(model)
    with torch.enable_grad():
        grads = flat(loss_grad(model, x, y, task, create_graph=True))

        def hvp(v: torch.Tensor) -> torch.Tensor:
            hv = torch.autograd.grad(grads, params, v, retain_graph=True, allow_unused=True)
            return flat(
                [torch.zeros_like(p) if h is None else h for p, h in zip(params, hv, strict=True)]
            )

        gen = torch.Generator().manual_seed(0)
        v0 = torch.randn(grads.numel(), generator=gen).to(grads.device, grads.dtype)
        return float(power_iteration(hvp, v0, iterations).detach())
