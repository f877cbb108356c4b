"""DropBlock (Ghiasi et al. 2018, "DropBlock: a regularization method for convolutional
networks"), in one dimension.

Neighbouring positions of a conv feature map are correlated, so dropping single positions
(dropout) removes little information; DropBlock drops contiguous runs of ``block_size``. Block
starts are drawn with rate γ = p/block_size · L/(L − block_size + 1) among the positions where a
whole block fits, so that about a fraction ``p`` of positions is dropped; each channel of each
example gets its own blocks (Ghiasi et al.'s per-feature-map variant). The kept positions are
rescaled by count/kept so the layer's mean is preserved. Eval is the identity (deterministic).

Where: every ``Slot("conv")`` of the ``cnn1d`` model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from regcore.models.slots import SlotModel
from regcore.regularizer_specs import DropBlockSpec
from regcore.regularizers.base import Regularizer


def seed_rate(p: float, block_size: int, length: int) -> float:
    """γ = p/b · L/(L − b + 1) (Ghiasi et al. eq. 1 in 1D)."""
    return p / block_size * length / (length - block_size + 1)


def block_mask(seeds: torch.Tensor, block_size: int) -> torch.Tensor:
    """Keep mask [B, C, L] from block starts ``seeds`` [B, C, L − b + 1]: 0 on s..s+b−1."""
    covered = F.max_pool1d(F.pad(seeds, (block_size - 1, block_size - 1)), block_size, stride=1)
    return 1.0 - covered


def dropblock(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x·mask rescaled by numel/Σmask (the kept fraction)."""
    return x * mask * (mask.numel() / mask.sum().clamp(min=1.0))


class DropBlock1d(nn.Module):
    def __init__(self, p: float, block_size: int):
        super().__init__()
        self.p, self.block_size = p, block_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1]
        b = min(self.block_size, length)
        if not self.training or self.p == 0.0:
            return x
        gamma = min(1.0, seed_rate(self.p, b, length))
        seeds = torch.empty(
            *x.shape[:-1], length - b + 1, device=x.device, dtype=x.dtype
        ).bernoulli_(gamma)
        return dropblock(x, block_mask(seeds, b))

    def extra_repr(self) -> str:
        return f"p={self.p}, block_size={self.block_size}"


class DropBlock(Regularizer):
    spec_class = DropBlockSpec
    spec: DropBlockSpec

    def configure_model(self, model: nn.Module) -> nn.Module:
        slots = model.slots("conv") if isinstance(model, SlotModel) else []
        if not slots:
            raise ValueError("dropblock needs conv feature maps (model cnn1d)")
        for slot in slots:
            slot.ops.append(DropBlock1d(self.spec.p, self.spec.block_size))
        return model
