"""Jacobian regularization: λ·mean_n ‖∂f(xₙ)/∂x‖²_F, by double backprop (Drucker & LeCun 1992).

Penalizing the input gradient is the small-noise limit of training with input noise (Prince
§9.3.4; Bishop 1995). For K outputs the full Frobenius norm needs K backward passes; the default
``projection`` estimator (Hoffman et al. 2019, "Robust learning with Jacobian regularization")
uses vᵀJ with v ~ N(0, I_K), an unbiased estimate since E‖vᵀJ‖² = ‖J‖²_F, one backward pass per
projection. ``full`` computes all K rows exactly and suits small K (MNIST-1D's 10 classes).

The penalty needs outputs that depend on an input with ``requires_grad``, so the batch is passed
through the model a second time (in training mode: dropout masks differ from the data-loss pass).
"""

from __future__ import annotations

import torch

from regcore.models.bn import without_buffer_updates
from regcore.regularizer_specs import JacobianSpec
from regcore.regularizers.base import Regularizer, Step


def jacobian_sq_norm(
    outputs: torch.Tensor,
    x: torch.Tensor,
    estimator: str = "full",
    projections: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """mean over the batch of ‖∂outputs[n]/∂x[n]‖²_F (exact or by random projections).

    ``outputs`` [B, K] must have been computed from ``x`` [B, ...] row by row (no batch mixing,
    so eval-mode batch norm or none), with ``create_graph`` kept so the result is differentiable.
    """
    b, k = outputs.shape[0], outputs.shape[1]
    if estimator == "full":
        vs = [
            torch.eye(k, device=outputs.device, dtype=outputs.dtype)[i].expand(b, k)
            for i in range(k)
        ]
        scale = 1.0
    else:
        vs = [
            torch.randn(b, k, device=outputs.device, dtype=outputs.dtype, generator=generator)
            for _ in range(projections)
        ]
        scale = 1.0 / projections
    total = outputs.new_zeros(())
    for v in vs:
        (g,) = torch.autograd.grad(outputs, x, grad_outputs=v, create_graph=True)
        total = total + g.pow(2).sum() / b
    return scale * total


class Jacobian(Regularizer):
    spec_class = JacobianSpec
    spec: JacobianSpec

    def penalty(self, step: Step) -> torch.Tensor:
        x = step.x.detach().requires_grad_(True)
        out = without_buffer_updates(step.model)(x)  # a second pass: leave BN statistics alone
        sq = jacobian_sq_norm(out, x, self.spec.estimator, self.spec.projections)
        return self.spec.strength * sq
