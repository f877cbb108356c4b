"""Stochastic depth (Huang et al. 2016, "Deep networks with stochastic depth").

Each residual block y = s(x) + f(x) drops its branch f in training: block l of L (from 1) is
skipped with probability p_l = p·l/L, rising linearly to ``p`` at the last block, so early blocks
that build low-level features survive more often. We draw one Bernoulli per example (as timm's
``drop_path``) and scale a kept branch by 1/(1−p_l), the inverted scaling of every ``p`` in this
catalog: the expected output is then the full network's, and the eval pass uses every branch as it
is (Huang et al. instead scale the branch by its survival probability at test time; the two are
the same function of the weights up to that reparametrization).

Where: the ``branch`` of every ``ResidualBlock`` of ``resmlp`` and every ``ResidualConvBlock`` of
a ``cnn1d`` with ``residual: true``.
"""

from __future__ import annotations

import torch
from torch import nn

from regcore.models.cnn1d import ResidualConvBlock
from regcore.models.resmlp import ResidualBlock
from regcore.regularizer_specs import StochasticDepthSpec
from regcore.regularizers.base import Regularizer


def skip_probabilities(p: float, blocks: int) -> list[float]:
    """p_l = p·l/L for l = 1..L (Huang et al.'s linear decay rule)."""
    return [p * (i + 1) / blocks for i in range(blocks)]


def drop_path(branch_out: torch.Tensor, keep_mask: torch.Tensor, p: float) -> torch.Tensor:
    """A branch's output with whole examples zeroed where ``keep_mask`` is 0, kept ones × 1/(1−p).

    ``keep_mask`` has one entry per example (shape [B]).
    """
    shape = (branch_out.shape[0],) + (1,) * (branch_out.dim() - 1)
    return branch_out * keep_mask.view(shape) / (1.0 - p)


class DropPath(nn.Module):
    """Wraps a residual branch: randomly dropped per example in training, as is at eval."""

    def __init__(self, branch: nn.Module, p: float):
        super().__init__()
        self.branch = branch
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        if not self.training or self.p == 0.0:
            return out
        keep = torch.empty(out.shape[0], device=out.device, dtype=out.dtype).bernoulli_(1 - self.p)
        return drop_path(out, keep, self.p)

    def extra_repr(self) -> str:
        return f"p={self.p:.4g}"


def residual_blocks(model: nn.Module) -> list[ResidualBlock | ResidualConvBlock]:
    return [m for m in model.modules() if isinstance(m, ResidualBlock | ResidualConvBlock)]


class StochasticDepth(Regularizer):
    spec_class = StochasticDepthSpec
    spec: StochasticDepthSpec

    def configure_model(self, model: nn.Module) -> nn.Module:
        blocks = residual_blocks(model)
        if not blocks:
            raise ValueError(
                "stochastic_depth needs residual blocks: use model resmlp, or cnn1d with "
                "residual true and at least two channel entries"
            )
        for block, p_l in zip(blocks, skip_probabilities(self.spec.p, len(blocks)), strict=True):
            block.branch = DropPath(block.branch, p_l)
        return model
