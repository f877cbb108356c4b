"""The zero-mean Gaussian prior N(0, σ²_prior·I) on the weights, and its L2 strength.

MAP inference (Prince eq. 9.11's numerator) maximises Σᵢ log Pr(yᵢ|xᵢ, φ) + log Pr(φ). RegLab's
objective is the *mean* data loss plus penalties (``l2.strength`` λ adds λΣw² to the mean data
loss), so divide the negative log posterior by the N training examples:

    −log Pr(φ|D) / N = meanᵢ(−log Pr(yᵢ|xᵢ, φ)) + Σw² / (2·N·σ²_prior) + const.

- Cross-entropy is −log Pr itself: λ = 1 / (2·N·σ²_prior).
- Least squares with noise variance σ²_noise: −log Pr = (y − f)²/(2σ²_noise) and RegLab's mse is
  mean (y − f)², so the objective times 2σ²_noise gives λ = σ²_noise / (N·σ²_prior). The form
  λ = σ²_noise/σ²_prior holds for the *sum* of squared errors; under the mean loss the 1/N stays.

A smaller prior variance is a stronger L2 penalty; both are tested against ``l2`` to 1e-6.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from regcore.models.params import named_penalized
from regcore.regularizers.base import Regularizer, Step
from regcore.regularizers.l2 import l2_penalty


def l2_strength(prior_var: float, n: int, noise_var: float | None = None) -> float:
    """λ of ``l2`` that the prior N(0, prior_var) is under the mean loss over ``n`` examples:
    1/(2·n·prior_var) for cross-entropy, noise_var/(n·prior_var) for least squares."""
    if noise_var is None:
        return 1.0 / (2.0 * n * prior_var)
    return noise_var / (n * prior_var)


class GaussianPrior:
    """−log N(w; 0, σ²_prior) / N summed over ``params``, as the l2 penalty λΣw² it equals."""

    def __init__(self, params: Sequence[torch.Tensor], prior_var: float, n: int):
        self.params = list(params)
        self.strength = l2_strength(prior_var, n)

    def penalty(self) -> torch.Tensor:
        return l2_penalty(self.params, self.strength)


class PriorRegularizer(Regularizer):
    """A regularizer trained to the MAP under its spec's ``prior_var`` (sgld, laplace): the
    prior's penalty on the parameters its spec's ``exclude`` leaves, over the training split."""

    def bind_data(self, data: Any) -> None:
        self.data = data
        self.n = len(data.train)

    def setup(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        spec: Any = self.spec
        params = [p for _, p in named_penalized(model, spec.exclude)]
        self.prior = GaussianPrior(params, spec.prior_var, self.n)

    def penalty(self, step: Step) -> torch.Tensor:
        return self.prior.penalty()
