"""Measurements that tests of several regularizers share (not yet production metrics)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def sharpness(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: LossFn,
    iters: int = 30,
    seed: int = 0,
) -> float:
    """Top eigenvalue of the Hessian of ``loss_fn(model(x), y)`` w.r.t. all parameters, by power
    iteration on Hessian-vector products (double backprop), the model in eval mode."""
    was_training = model.training
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    loss = loss_fn(model(x), y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    gen = torch.Generator().manual_seed(seed)
    v = [torch.randn(p.shape, generator=gen).to(p) for p in params]
    eig = torch.zeros(())
    for _ in range(iters):
        norm = torch.sqrt(sum((t * t).sum() for t in v))
        v = [t / norm for t in v]
        hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
        eig = sum((h * t).sum() for h, t in zip(hv, v, strict=True))
        v = [h.detach() for h in hv]
    model.train(was_training)
    return float(eig)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())
