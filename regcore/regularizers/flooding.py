"""Flooding: |L − b| + b on the batch data loss (Ishida et al. 2020, "Do We Need Zero Training
Loss After Achieving Zero Training Error?").

Above the flood level b it is plain descent; below b the gradient flips sign and the training
loss is pushed back up, so it floats around b instead of going to zero.
"""

from __future__ import annotations

import torch

from regcore.regularizer_specs import FloodingSpec
from regcore.regularizers.base import Regularizer, Step


def flood(loss: torch.Tensor, level: float) -> torch.Tensor:
    """|L − b| + b."""
    return (loss - level).abs() + level


class Flooding(Regularizer):
    spec_class = FloodingSpec
    spec: FloodingSpec

    def transform_loss(self, loss: torch.Tensor, step: Step) -> torch.Tensor:
        return flood(loss, self.spec.level)
