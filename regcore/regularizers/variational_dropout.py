"""Variational (recurrent) dropout (Gal & Ghahramani 2016, "A theoretically grounded application
of dropout in recurrent neural networks").

Naive dropout in an RNN draws a new mask at every time step, which destroys the memory the
recurrence carries. Gal & Ghahramani's variational reading instead samples one mask per sequence
and reuses it at every step, on the inputs (``input_p``) and on the recurrent state fed to the
gates (``p``): the same units are dropped at all steps. Inverted scaling 1/(1−p); eval is the
identity.

Where: the ``gru`` model's step slots (``StepSlot`` role "input" and "state"): the model calls
``begin`` at the start of each sequence, which draws the mask.
"""

from __future__ import annotations

import torch
from torch import nn

from regcore.models.gru import GRU
from regcore.regularizer_specs import VariationalDropoutSpec
from regcore.regularizers.base import Regularizer


def sequence_mask(like: torch.Tensor, p: float) -> torch.Tensor:
    """A keep mask of ``like``'s shape [B, F], scaled by 1/(1−p), drawn once per sequence."""
    return torch.empty_like(like).bernoulli_(1 - p) / (1 - p)


class SequenceDropout(nn.Module):
    """Multiplies every step by the mask drawn at ``begin``; the identity at eval."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.mask: torch.Tensor | None = None

    def begin(self, like: torch.Tensor) -> None:
        self.mask = sequence_mask(like, self.p) if self.training and self.p > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.mask is None:
            return x
        return x * self.mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


class VariationalDropout(Regularizer):
    spec_class = VariationalDropoutSpec
    spec: VariationalDropoutSpec

    def configure_model(self, model: nn.Module) -> nn.Module:
        if not isinstance(model, GRU):
            raise ValueError("variational_dropout needs a recurrent model (gru)")
        if self.spec.p > 0:
            model.step_state.ops.append(SequenceDropout(self.spec.p))
        if self.spec.input_p > 0:
            model.step_input.ops.append(SequenceDropout(self.spec.input_p))
        return model
