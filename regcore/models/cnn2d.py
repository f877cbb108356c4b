"""A small 2D convolutional network for images: [Conv2d → [BatchNorm] → activation → Slot("conv")
→ 2×2 max pool] per entry of ``channels``, flatten, an MLP head.

Inputs arrive flattened ([B, C·H·W], as every dataset stores them) and are viewed as images of
``input_shape`` ((H, W) or (C, H, W)); without one, a square single-channel image is assumed
(digits: 64 features are 8×8). Pooling stops once a side would drop below 2.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from regcore.models.layers import activation
from regcore.models.slots import Slot, SlotModel


def image_shape_of(in_features: int, input_shape: tuple[int, ...] | None) -> tuple[int, int, int]:
    """(C, H, W) of one input row."""
    if input_shape is None:
        side = math.isqrt(in_features)
        if side * side != in_features:
            raise ValueError(f"cnn2d: {in_features} features are not a square image; give a shape")
        return 1, side, side
    if len(input_shape) == 2:
        return 1, int(input_shape[0]), int(input_shape[1])
    if len(input_shape) == 3:
        return int(input_shape[0]), int(input_shape[1]), int(input_shape[2])
    raise ValueError(f"cnn2d reads (H, W) or (C, H, W) images, not rows of shape {input_shape}")


class CNN2D(SlotModel):
    def __init__(
        self,
        in_features: int,
        out_features: int,
        channels: list[int],
        kernel_size: int,
        pool: bool,
        hidden: list[int],
        act: str,
        batch_norm: bool,
        input_shape: tuple[int, ...] | None = None,
    ):
        super().__init__()
        self.shape = image_shape_of(in_features, input_shape)
        c_in, h, w = self.shape
        self.input_slot = Slot("input")
        layers: list[nn.Module] = []
        for c in channels:
            layers.append(nn.Conv2d(c_in, c, kernel_size, padding=kernel_size // 2))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c))
            layers += [activation(act), Slot("conv")]
            h = h + 2 * (kernel_size // 2) - kernel_size + 1
            w = w + 2 * (kernel_size // 2) - kernel_size + 1
            if pool and min(h, w) >= 4:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            c_in = c
        if min(h, w) < 1:
            raise ValueError(f"cnn2d: kernel_size {kernel_size} shrinks the image to nothing")
        self.features = nn.Sequential(*layers)
        dense: list[nn.Module] = []
        width = c_in * h * w
        for n in hidden:
            dense += [nn.Linear(width, n), activation(act), Slot("hidden")]
            width = n
        self.dense = nn.Sequential(*dense)
        self.out = nn.Linear(width, out_features)

    def head(self) -> nn.Module:
        return self.out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_slot(x).reshape(x.shape[0], *self.shape)
        x = self.features(x).flatten(1)
        return self.out(self.dense(x))
