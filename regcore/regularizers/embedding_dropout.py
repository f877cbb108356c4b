"""Embedding dropout: drop whole token embeddings (Gal & Ghahramani 2016, §4, "word dropout";
Merity et al. 2018 drop whole embedding rows).

Each token's embedding vector (patch embedding plus position) is zeroed as a whole with
probability ``p``, the kept ones scaled by 1/(1−p); the encoder learns not to rely on any single
patch. Eval is the identity (deterministic).

Where: the ``Slot("embedding")`` of the ``transformer`` model, input [B, T, D].
"""

from __future__ import annotations

import torch
from torch import nn

from regcore.models.slots import SlotModel
from regcore.regularizer_specs import EmbeddingDropoutSpec
from regcore.regularizers.base import Regularizer


def drop_tokens(x: torch.Tensor, keep: torch.Tensor, p: float) -> torch.Tensor:
    """x [B, T, D] with token (b, t) zeroed where ``keep`` [B, T] is 0, the rest × 1/(1−p)."""
    return x * keep.unsqueeze(-1) / (1.0 - p)


class TokenDropout(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty(x.shape[:2], device=x.device, dtype=x.dtype).bernoulli_(1 - self.p)
        return drop_tokens(x, keep, self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class EmbeddingDropout(Regularizer):
    spec_class = EmbeddingDropoutSpec
    spec: EmbeddingDropoutSpec

    def configure_model(self, model: nn.Module) -> nn.Module:
        slots = model.slots("embedding") if isinstance(model, SlotModel) else []
        if not slots:
            raise ValueError("embedding_dropout needs the transformer model (no embeddings found)")
        for slot in slots:
            slot.ops.append(TokenDropout(self.spec.p))
        return model
