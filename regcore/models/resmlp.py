"""A residual MLP (He et al. 2016 blocks on vectors); stochastic depth wraps its blocks."""

from __future__ import annotations

import torch
from torch import nn

from regcore.models.layers import activation
from regcore.models.slots import Slot, SlotModel


class ResidualBlock(nn.Module):
    """x + branch(x), branch = Linear → [BN] → act → Slot → Linear."""

    def __init__(self, width: int, act: str, batch_norm: bool):
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(width, width)]
        if batch_norm:
            layers.append(nn.BatchNorm1d(width))
        layers += [activation(act), Slot("hidden"), nn.Linear(width, width)]
        # typed as a Module: stochastic depth swaps in a DropPath around it
        self.branch: nn.Module = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


class ResMLP(SlotModel):
    def __init__(
        self,
        in_features: int,
        out_features: int,
        width: int,
        blocks: int,
        act: str,
        batch_norm: bool,
    ):
        super().__init__()
        self.input_slot = Slot("input")
        self.stem = nn.Sequential(nn.Linear(in_features, width), activation(act), Slot("hidden"))
        self.blocks = nn.ModuleList(ResidualBlock(width, act, batch_norm) for _ in range(blocks))
        self.post = nn.Sequential(activation(act), Slot("hidden"))
        self.out = nn.Linear(width, out_features)

    def head(self) -> nn.Module:
        return self.out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.input_slot(x))
        for block in self.blocks:
            x = block(x)
        return self.out(self.post(x))
