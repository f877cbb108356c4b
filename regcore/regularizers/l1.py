"""L1 penalty (lasso) λΣ|w|, as a loss term or as its proximal step (soft-thresholding).

Tibshirani 1996; Antczak §3 (norm penalties); Goodfellow et al. 2016 §7.1.2. The plain penalty
adds λ·sign(w) to the gradient, so weights hover around zero without reaching it. With
``proximal`` the penalty leaves the loss and each optimizer step is followed by the proximal
operator of lr·λ|w|, sign(w)·max(|w| − lr·λ, 0) (ISTA, Beck & Teboulle 2009), which sets
weights to exactly zero. Weights only: biases and normalization parameters are not penalized.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from regcore.models.params import named_penalized
from regcore.regularizer_specs import L1Spec
from regcore.regularizers.base import Regularizer, Step


def l1_penalty(params: Iterable[torch.Tensor], strength: float) -> torch.Tensor:
    """λΣ|w| over ``params``."""
    terms = [p.abs().sum() for p in params]
    return strength * torch.stack(terms).sum() if terms else torch.zeros(())


def soft_threshold(w: torch.Tensor, threshold: float) -> torch.Tensor:
    """sign(w)·max(|w| − t, 0): the proximal operator of t·|w|."""
    return w.sign() * (w.abs() - threshold).clamp_min(0.0)


class L1Penalty(Regularizer):
    spec_class = L1Spec
    spec: L1Spec

    def setup(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.params = [p for _, p in named_penalized(model)]
        penalized = {id(p) for p in self.params}
        self.groups = [
            (group, [p for p in group["params"] if id(p) in penalized])
            for group in optimizer.param_groups
        ]

    def penalty(self, step: Step) -> torch.Tensor | None:
        if self.spec.proximal:
            return None
        return l1_penalty(self.params, self.spec.strength)

    @torch.no_grad()
    def after_optimizer_step(self, step: Step) -> None:
        if not self.spec.proximal:
            return
        for group, params in self.groups:
            # the threshold follows the group's current (possibly scheduled) learning rate
            threshold = group["lr"] * self.spec.strength
            for p in params:
                p.copy_(soft_threshold(p, threshold))
