"""L2 penalty (ridge, Tikhonov): λΣw² added to the loss.

Antczak eq. 9; Prince eq. 9.5. With plain SGD it equals torch's ``weight_decay = 2λ``. Biases
and normalization parameters are excluded by default (Goodfellow et al. 2016, §7.1).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from regcore.models.params import named_penalized
from regcore.regularizer_specs import L2Spec
from regcore.regularizers.base import Regularizer, Step


def l2_penalty(params: Iterable[torch.Tensor], strength: float | Iterable[float]) -> torch.Tensor:
    """λΣw² over ``params``; ``strength`` is one λ or one per tensor."""
    params = list(params)
    strengths = [strength] * len(params) if isinstance(strength, float | int) else list(strength)
    terms = [lam * p.pow(2).sum() for p, lam in zip(params, strengths, strict=True)]
    return torch.stack(terms).sum() if terms else torch.zeros(())


class L2Penalty(Regularizer):
    spec_class = L2Spec
    spec: L2Spec

    def setup(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        named = named_penalized(model, self.spec.exclude)
        self.params = [p for _, p in named]
        self.strengths = [_strength_for(n, self.spec) for n, _ in named]

    def penalty(self, step: Step) -> torch.Tensor:
        return l2_penalty(self.params, self.strengths)


def _strength_for(name: str, spec: L2Spec) -> float:
    """The longest matching ``per_layer`` prefix wins; otherwise the global strength."""
    matches = [k for k in spec.per_layer if name == k or name.startswith(k + ".")]
    return spec.per_layer[max(matches, key=len)] if matches else spec.strength
