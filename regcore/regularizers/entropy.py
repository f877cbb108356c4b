"""Entropy regularization of the predictive distribution: L ∓ β·H(softmax(f(x))).

``confidence_penalty`` (Pereyra et al. 2017, "Regularizing Neural Networks by Penalizing
Confident Output Distributions") subtracts β·H, pushing predictions toward uniform, a relative
of label smoothing; ``minimization`` (Grandvalet & Bengio 2004, entropy minimization) adds β·H,
making predictions more confident. H is averaged over the batch, like the data loss.
"""

from __future__ import annotations

import torch

from regcore.regularizer_specs import EntropySpec
from regcore.regularizers.base import Regularizer, Step


def softmax_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of H(p) = −Σ_k p_k log p_k, p = softmax(logits)."""
    log_p = logits.log_softmax(dim=1)
    return -(log_p.exp() * log_p).sum(dim=1).mean()


def entropy_penalty(logits: torch.Tensor, beta: float, mode: str) -> torch.Tensor:
    """−β·H for ``confidence_penalty``, +β·H for ``minimization``."""
    sign = -1.0 if mode == "confidence_penalty" else 1.0
    return sign * beta * softmax_entropy(logits)


class EntropyPenalty(Regularizer):
    spec_class = EntropySpec
    spec: EntropySpec

    def penalty(self, step: Step) -> torch.Tensor:
        assert step.outputs is not None, "the entropy penalty needs the step's outputs"
        return entropy_penalty(step.outputs, self.spec.beta, self.spec.mode)
