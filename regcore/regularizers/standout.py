"""Standout, adaptive dropout (Ba & Frey 2013, "Adaptive dropout for training deep neural
networks").

Each hidden unit j is kept with its own probability π_j = σ(α·a_j + β), computed from the unit's
activation: strongly active units are kept more often. With α = 0 every unit is kept with
probability σ(β), which is dropout with p = 1 − σ(β). Ba & Frey tie the standout network's
weights to the main network's (π = σ(α·w·x + β), from the pre-activation); here a_j is the
activation at the model's hidden slot, which for ReLU networks gives the same masks on every
unit that matters (a unit with w·x ≤ 0 outputs 0 whether dropped or not). π is not
differentiated through (the mask is a sample).

Inference, ``scaling``:
- ``expectation`` (Ba & Frey): training multiplies by the 0/1 mask m; eval multiplies by π, the
  mask's expectation, so eval is deterministic but not the identity.
- ``inverted``: training multiplies by m/π; eval is the identity (the catalog's convention for
  dropout). With α = 0 this is exactly ``dropout`` with p = 1 − σ(β).
"""

from __future__ import annotations

import torch
from torch import nn

from regcore.models.slots import SlotModel
from regcore.regularizer_specs import StandoutSpec
from regcore.regularizers.base import Regularizer


def keep_probability(a: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """π = σ(α·a + β)."""
    return torch.sigmoid(alpha * a + beta)


def standout(
    a: torch.Tensor, keep: torch.Tensor, mask: torch.Tensor | None, scaling: str
) -> torch.Tensor:
    """Training (``mask`` given): a·m, or a·m/π when inverted. Eval (no mask): a·π, or a."""
    if mask is None:
        return a if scaling == "inverted" else a * keep
    return a * mask / keep if scaling == "inverted" else a * mask


class StandoutLayer(nn.Module):
    def __init__(self, alpha: float, beta: float, scaling: str):
        super().__init__()
        self.alpha, self.beta, self.scaling = alpha, beta, scaling

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        keep = keep_probability(a.detach(), self.alpha, self.beta)
        mask = torch.bernoulli(keep) if self.training else None
        return standout(a, keep, mask, self.scaling)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, scaling={self.scaling}"


class Standout(Regularizer):
    spec_class = StandoutSpec
    spec: StandoutSpec

    def configure_model(self, model: nn.Module) -> nn.Module:
        slots = model.slots("hidden") if isinstance(model, SlotModel) else []
        if not slots:
            raise ValueError(f"standout found no hidden layer in {type(model).__name__}")
        for slot in slots:
            slot.ops.append(StandoutLayer(self.spec.alpha, self.spec.beta, self.spec.scaling))
        return model
