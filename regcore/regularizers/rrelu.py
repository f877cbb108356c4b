"""Randomized leaky ReLU (Xu et al. 2015, "Empirical evaluation of rectified activations").

f(x) = x for x ≥ 0 and a·x otherwise, with the negative slope a ~ U(lower, upper) drawn afresh
for every unit and example in training, and fixed to (lower + upper)/2 at eval, so the eval pass
is deterministic. Xu et al. write the slope as 1/a with a ~ U(3, 8); the defaults here,
U(1/8, 1/3), are the same range (torch's ``nn.RReLU`` defaults).

Where: every activation module of the model (its ReLU, tanh, ... layers) is replaced by
``nn.RReLU``: the technique is an activation function with noise, not a layer added on top.
"""

from __future__ import annotations

import torch
from torch import nn

from regcore.models.layers import ACTIVATIONS
from regcore.regularizer_specs import RReLUSpec
from regcore.regularizers.base import Regularizer


def rrelu(x: torch.Tensor, slopes: torch.Tensor) -> torch.Tensor:
    """x where x ≥ 0, slopes·x elsewhere (``slopes`` broadcast to x)."""
    return torch.where(x >= 0, x, x * slopes)


def eval_slope(lower: float, upper: float) -> float:
    return (lower + upper) / 2


class RReLU(Regularizer):
    spec_class = RReLUSpec
    spec: RReLUSpec

    def configure_model(self, model: nn.Module) -> nn.Module:
        kinds = tuple(ACTIVATIONS.values())
        targets = [
            (parent, name)
            for parent in model.modules()
            for name, child in parent.named_children()
            if isinstance(child, kinds)
        ]
        if not targets:
            raise ValueError(
                f"rrelu found no activation layer to replace in {type(model).__name__}"
            )
        for parent, name in targets:
            setattr(parent, name, nn.RReLU(self.spec.lower, self.spec.upper))
        self.replaced = len(targets)
        return model
