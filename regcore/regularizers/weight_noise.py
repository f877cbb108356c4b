"""Weight noise: forward and backward at w + ε, ε ~ N(0, σ²), then update the clean w.

An (1996), "The effects of adding noise during backpropagation training on a generalization
performance"; Graves (2011) for its use in recurrent nets; Antczak §3 (noise injection). In
expectation it adds ½σ²·tr(∇²L) to the loss, so it pushes toward flat minima (lower sharpness).
Noise is drawn afresh each step on the weights (biases and normalization parameters are left
clean, as with the norm penalties).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from regcore.models.params import named_penalized
from regcore.regularizer_specs import WeightNoiseSpec
from regcore.regularizers.base import Regularizer, Step


@torch.no_grad()
def add_weight_noise_(
    params: Sequence[torch.Tensor], sigma: float, generator: torch.Generator | None = None
) -> list[torch.Tensor]:
    """Add ε ~ N(0, σ²) to each tensor in place; return copies of the clean values."""
    clean = [p.detach().clone() for p in params]
    for p in params:
        noise = torch.randn(p.shape, dtype=p.dtype, device=p.device, generator=generator)
        p.add_(noise, alpha=sigma)
    return clean


@torch.no_grad()
def restore_weights_(params: Sequence[torch.Tensor], clean: Sequence[torch.Tensor]) -> None:
    """Put the clean values back (a copy, not w + ε − ε, so no rounding drift accumulates)."""
    for p, c in zip(params, clean, strict=True):
        p.copy_(c)


class WeightNoise(Regularizer):
    spec_class = WeightNoiseSpec
    spec: WeightNoiseSpec

    def setup(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.params = [p for _, p in named_penalized(model)]
        self.clean: list[torch.Tensor] | None = None

    def before_forward(self, step: Step) -> None:
        if self.spec.sigma > 0:
            self.clean = add_weight_noise_(self.params, self.spec.sigma)

    def before_optimizer_step(self, step: Step) -> None:
        # the gradient was taken at w + ε; the optimizer must apply it to w
        if self.clean is not None:
            restore_weights_(self.params, self.clean)
            self.clean = None
