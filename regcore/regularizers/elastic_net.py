"""Elastic net λ₁Σ|w| + λ₂Σw²: the L1 and L2 penalties together.

Zou & Hastie 2005, "Regularization and variable selection via the elastic net"; Goodfellow et
al. 2016 §7.1. The L1 part drives weights toward zero, the L2 part shrinks the rest, so its
sparsity lies between the two alone. Weights only: biases and normalization parameters are
not penalized.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from regcore.models.params import named_penalized
from regcore.regularizer_specs import ElasticNetSpec
from regcore.regularizers.base import Regularizer, Step
from regcore.regularizers.l1 import l1_penalty
from regcore.regularizers.l2 import l2_penalty


def elastic_net_penalty(params: Sequence[torch.Tensor], l1: float, l2: float) -> torch.Tensor:
    """λ₁Σ|w| + λ₂Σw² over ``params``."""
    return l1_penalty(params, l1) + l2_penalty(params, l2)


class ElasticNet(Regularizer):
    spec_class = ElasticNetSpec
    spec: ElasticNetSpec

    def setup(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.params = [p for _, p in named_penalized(model)]

    def penalty(self, step: Step) -> torch.Tensor:
        return elastic_net_penalty(self.params, self.spec.l1, self.spec.l2)
