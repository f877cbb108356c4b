"""Explicit gradient-norm regularization: c‖∂L/∂φ‖², by double backprop.

Prince eq. 9.8 (Barrett & Dherin 2021, "Implicit gradient regularization"): gradient descent
with step α follows, to first order in α, the gradient flow of L̃ = L + (α/4)‖∂L/∂φ‖². Adding the
term explicitly with c = α/4 (the default, ``strength: null``, from the optimizer's lr) makes that
implicit bias explicit; a larger c strengthens it. The gradient is of the batch's data loss.

``gradient_descent`` and ``gradient_flow`` are the pure two-parameter tools that check eq. 9.8:
tiny-step flow on L̃ lands nearer the discrete-GD endpoint than flow on L does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from regcore.regularizer_specs import GradNormSpec
from regcore.regularizers.base import Regularizer, Step


def grad_norm_sq(
    loss: torch.Tensor, params: Sequence[torch.Tensor], create_graph: bool
) -> torch.Tensor:
    """‖∂loss/∂φ‖² over ``params``; differentiable in φ when ``create_graph``."""
    # the graph is kept either way: the data loss is backpropagated after this
    grads = torch.autograd.grad(
        loss, list(params), create_graph=create_graph, retain_graph=True, allow_unused=True
    )
    terms = [g.pow(2).sum() for g in grads if g is not None]
    return torch.stack(terms).sum() if terms else loss.new_zeros(())


def grad_norm_penalty(
    loss: torch.Tensor, params: Sequence[torch.Tensor], coeff: float
) -> torch.Tensor:
    """c‖∂loss/∂φ‖² (Prince eq. 9.8 with c = α/4)."""
    return coeff * grad_norm_sq(loss, params, create_graph=True)


def modified_loss(loss_fn: Callable[[torch.Tensor], torch.Tensor], coeff: float) -> Callable:
    """φ ↦ L(φ) + c‖∇L(φ)‖², for a loss of one parameter tensor φ."""

    def f(phi: torch.Tensor) -> torch.Tensor:
        phi = phi if phi.requires_grad else phi.requires_grad_(True)
        loss = loss_fn(phi)
        return loss + grad_norm_penalty(loss, [phi], coeff)

    return f


def gradient_descent(
    loss_fn: Callable[[torch.Tensor], torch.Tensor], phi0: torch.Tensor, lr: float, steps: int
) -> torch.Tensor:
    """φ ← φ − lr·∇L(φ), ``steps`` times; returns the endpoint."""
    phi = phi0.detach().clone()
    for _ in range(steps):
        phi.requires_grad_(True)
        (g,) = torch.autograd.grad(loss_fn(phi), phi)
        phi = (phi - lr * g).detach()
    return phi


def gradient_flow(
    loss_fn: Callable[[torch.Tensor], torch.Tensor], phi0: torch.Tensor, time: float, dt: float
) -> torch.Tensor:
    """dφ/dt = −∇L(φ) integrated to ``time`` by Euler steps of ``dt`` (dt ≪ the GD step)."""
    return gradient_descent(loss_fn, phi0, dt, round(time / dt))


class GradNorm(Regularizer):
    spec_class = GradNormSpec
    spec: GradNormSpec

    def setup(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        lr = float(optimizer.param_groups[0]["lr"])
        self.coeff = self.spec.strength if self.spec.strength is not None else lr / 4.0
        self.sum_norm = torch.zeros(())
        self.count = 0

    def penalty(self, step: Step) -> torch.Tensor | None:
        assert step.data_loss is not None
        sq = grad_norm_sq(step.data_loss, self.params, create_graph=self.coeff > 0)
        self.sum_norm = self.sum_norm.to(sq.device) + sq.detach().sqrt()
        self.count += 1
        return self.coeff * sq if self.coeff > 0 else None

    def extra_metrics(self, model: nn.Module) -> dict[str, float]:
        """``grad_norm_batch``: mean ‖∂L_batch/∂φ‖ over the epoch's steps (one sync per epoch)."""
        if not self.count:
            return {}
        out = {"grad_norm_batch": float(self.sum_norm) / self.count}
        self.sum_norm, self.count = torch.zeros(()), 0
        return out
