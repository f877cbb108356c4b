"""Hidden-unit noise: h + N(0, σ²) on every hidden activation in training, the identity at eval.

Antczak §3.3 (noise injection at hidden layers); the additive counterpart of Gaussian dropout.
Like dropout, a ``GaussianNoise`` module is appended to every hidden (and conv) slot.
"""

from __future__ import annotations

import torch
from torch import nn

from regcore.models.slots import SlotModel
from regcore.regularizer_specs import HiddenNoiseSpec
from regcore.regularizers.base import Regularizer


def add_gaussian_noise(h: torch.Tensor, sigma: float) -> torch.Tensor:
    """h + r, r ~ N(0, σ²) elementwise, drawn on h's device."""
    return h + sigma * torch.randn_like(h)


class GaussianNoise(nn.Module):
    def __init__(self, sigma: float):
        super().__init__()
        self.sigma = sigma

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if not self.training or self.sigma == 0.0:
            return h
        return add_gaussian_noise(h, self.sigma)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"


class HiddenNoise(Regularizer):
    spec_class = HiddenNoiseSpec
    spec: HiddenNoiseSpec

    def configure_model(self, model: nn.Module) -> nn.Module:
        assert isinstance(model, SlotModel)
        for slot in model.slots("hidden", "conv"):
            slot.ops.append(GaussianNoise(self.spec.sigma))
        return model
