"""A 1D convolutional network: weights shared along the sequence (MNIST-1D and friends)."""

from __future__ import annotations

import torch
from torch import nn

from regcore.models.layers import activation
from regcore.models.slots import Slot, SlotModel


def conv_unit(
    c_in: int, c_out: int, kernel_size: int, act: str, batch_norm: bool
) -> list[nn.Module]:
    """Conv1d → [BatchNorm] → activation → Slot("conv")."""
    layers: list[nn.Module] = [nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(c_out))
    return layers + [activation(act), Slot("conv")]


class ResidualConvBlock(nn.Module):
    """shortcut(x) + branch(x); the shortcut is a 1×1 conv when the channel count changes.

    The branch is one conv unit, ``branch`` by name as in ``ResidualBlock`` so that stochastic
    depth treats both the same way.
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int, act: str, batch_norm: bool):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError("residual cnn1d blocks need an odd kernel_size to keep the length")
        # typed as a Module: stochastic depth swaps in a DropPath around it
        self.branch: nn.Module = nn.Sequential(
            *conv_unit(c_in, c_out, kernel_size, act, batch_norm)
        )
        self.shortcut: nn.Module = nn.Identity() if c_in == c_out else nn.Conv1d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.branch(x)


class CNN1D(SlotModel):
    """Conv1d → [BatchNorm] → activation → Slot("conv") blocks, flatten, an MLP head.

    With ``residual``, every conv unit after the first becomes a ``ResidualConvBlock``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        channels: list[int],
        kernel_size: int,
        hidden: list[int],
        act: str,
        batch_norm: bool,
        residual: bool = False,
        in_channels: int = 1,
    ):
        super().__init__()
        self.input_slot = Slot("input")
        self.in_channels = in_channels  # (N, C, L) signals arrive flattened as [N, C·L]
        convs: list[nn.Module] = []
        c_in = in_channels
        for i, c in enumerate(channels):
            if residual and i > 0:
                convs.append(ResidualConvBlock(c_in, c, kernel_size, act, batch_norm))
            else:
                convs += conv_unit(c_in, c, kernel_size, act, batch_norm)
            c_in = c
        self.features = nn.Sequential(*convs)
        length = in_features // in_channels
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
        x = self.input_slot(x).reshape(x.shape[0], self.in_channels, -1)
        x = self.features(x).flatten(1)
        return self.out(self.dense(x))
