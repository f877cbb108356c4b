"""Linear models and multilayer perceptrons."""

from __future__ import annotations

import torch
from torch import nn

from regcore.models.layers import activation
from regcore.models.slots import Slot, SlotModel


class LinearModel(SlotModel):
    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.input_slot = Slot("input")
        self.out = nn.Linear(in_features, out_features)

    def head(self) -> nn.Module:
        return self.out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.input_slot(x))


class MLP(SlotModel):
    """Linear → [BatchNorm] → activation → Slot, per hidden layer, then a linear head."""

    def __init__(
        self, in_features: int, out_features: int, hidden: list[int], act: str, batch_norm: bool
    ):
        super().__init__()
        self.input_slot = Slot("input")
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers += [activation(act), Slot("hidden")]
            width = h
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(width, out_features)

    def head(self) -> nn.Module:
        return self.out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(self.input_slot(x)))
