"""Decoupled weight decay: φ ← φ − lr·λ′·φ, applied apart from the gradient step.

Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization" (AdamW). With plain SGD it is
the same update as an L2 penalty λΣw² with λ = λ′/2 (Prince §9.1.2); with adaptive optimizers
(Adam) it is not, because the decay then bypasses the per-parameter gradient scaling.
Weights only: biases and normalization parameters are not decayed (as for ``l2``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from regcore.models.params import named_penalized
from regcore.regularizer_specs import WeightDecaySpec
from regcore.regularizers.base import Regularizer, Step


@torch.no_grad()
def decay_(params: Sequence[torch.Tensor], lr: float, rate: float) -> None:
    """φ ← (1 − lr·λ′)·φ in place, for every tensor of ``params``."""
    if params:
        torch._foreach_mul_(list(params), 1.0 - lr * rate)


class WeightDecay(Regularizer):
    spec_class = WeightDecaySpec
    spec: WeightDecaySpec

    def setup(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        # Grouped as the optimizer groups them, so each group decays with its own (scheduled) lr.
        decayed = {id(p) for _, p in named_penalized(model)}
        self.groups = [
            (group, [p for p in group["params"] if id(p) in decayed])
            for group in optimizer.param_groups
        ]

    def before_optimizer_step(self, step: Step) -> None:
        # Before the step, so the gradient (already computed) and the decay both act on the
        # same φ: exactly SGD on L + (λ′/2)Σw².
        for group, params in self.groups:
            decay_(params, group["lr"], self.spec.rate)
