"""Attention dropout: dropout on the attention weights of a transformer (Vaswani et al. 2017,
§5.4; the ``attn_drop`` of BERT and timm's ViT).

Each weight a_ij of softmax(QKᵀ/√d) is zeroed with probability ``p`` and the kept ones scaled by
1/(1−p), so a query attends to a random subset of keys in training and to all of them, as they
are, at eval (deterministic). Rows of the dropped matrix no longer sum to one exactly; they do in
expectation.

Where: the ``Slot("attention")`` of every attention layer of the ``transformer`` model.
"""

from __future__ import annotations

from torch import nn

from regcore.models.slots import SlotModel
from regcore.regularizer_specs import AttentionDropoutSpec
from regcore.regularizers.base import Regularizer


class AttentionDropout(Regularizer):
    spec_class = AttentionDropoutSpec
    spec: AttentionDropoutSpec

    def configure_model(self, model: nn.Module) -> nn.Module:
        slots = model.slots("attention") if isinstance(model, SlotModel) else []
        if not slots:
            raise ValueError("attention_dropout needs the transformer model (no attention found)")
        for slot in slots:
            slot.ops.append(nn.Dropout(self.spec.p))
        return model
