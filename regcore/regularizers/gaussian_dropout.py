"""Gaussian dropout (Srivastava et al. 2014, §10): multiplicative N(1, p/(1−p)) noise on units.

Instead of a Bernoulli mask scaled by 1/(1−p), each hidden activation is multiplied by
r ~ N(1, σ²) with σ² = p/(1−p), the variance of the inverted Bernoulli mask, so ``p`` reads as
the equivalent drop probability. E[r] = 1, so no rescaling is needed at eval, where the layer is
the identity (blog post "Regularization techniques for training deep neural networks", §Dropout
variants). The noise goes into every hidden and conv slot of the model, where dropout would go.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from regcore.models.slots import SlotModel
from regcore.regularizer_specs import GaussianDropoutSpec
from regcore.regularizers.base import Regularizer


def gaussian_dropout_sigma(p: float) -> float:
    """σ = √(p/(1−p)): the standard deviation of an inverted Bernoulli(1−p) mask."""
    return math.sqrt(p / (1.0 - p))


def gaussian_dropout(x: torch.Tensor, p: float, noise: torch.Tensor) -> torch.Tensor:
    """x·(1 + σ·ε) with ε = ``noise`` ~ N(0, 1) of x's shape, σ = √(p/(1−p))."""
    return x * (1.0 + gaussian_dropout_sigma(p) * noise)


class GaussianDropoutLayer(nn.Module):
    """Draws ε ~ N(0, 1) each training forward; the identity in eval mode or when p = 0."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return gaussian_dropout(x, self.p, torch.randn_like(x))

    def extra_repr(self) -> str:
        return f"p={self.p}"


class GaussianDropout(Regularizer):
    spec_class = GaussianDropoutSpec
    spec: GaussianDropoutSpec

    def configure_model(self, model: nn.Module) -> nn.Module:
        assert isinstance(model, SlotModel)
        for slot in model.slots("hidden", "conv"):
            slot.ops.append(GaussianDropoutLayer(self.spec.p))
        return model
