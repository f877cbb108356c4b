"""A 1D convolutional network: weights shared along the sequence (MNIST-1D and friends)."""

from __future__ import annotations

import torch
from torch import nn

from regcore.models.layers import activation
from regcore.models.slots import Slot, SlotModel


class CNN1D(SlotModel):
    """Conv1d → [BatchNorm] → activation → Slot("conv") blocks, flatten, an MLP head."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        channels: list[int],
        kernel_size: int,
        hidden: list[int],
        act: str,
        batch_norm: bool,
    ):
        super().__init__()
        self.input_slot = Slot("input")
        convs: list[nn.Module] = []
        c_in = 1
        for c in channels:
            convs.append(nn.Conv1d(c_in, c, kernel_size, padding=kernel_size // 2))
            if batch_norm:
                convs.append(nn.BatchNorm1d(c))
            convs += [activation(act), Slot("conv")]
            c_in = c
        self.features = nn.Sequential(*convs)
        length = in_features
        for _ in channels:  # "same" padding keeps the length for odd kernels
            length = length + 2 * (kernel_size // 2) - kernel_size + 1
        dense: list[nn.Module] = []
        width = c_in * length
        for h in hidden:
            dense += [nn.Linear(width, h), activation(act), Slot("hidden")]
            width = h
        self.dense = nn.Sequential(*dense)
        self.out = nn.Linear(width, out_features)

    def head(self) -> nn.Module:
        return self.out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_slot(x).unsqueeze(1)
        x = self.features(x).flatten(1)
        return self.out(self.dense(x))
