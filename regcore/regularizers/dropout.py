"""Dropout (Srivastava et al. 2014): Bernoulli masks on hidden units, and optionally inputs.

``p`` is the *drop* probability. Inverted scaling (kept units × 1/(1−p) in training) makes the
eval pass the identity, which is the weight-scaling inference rule (Prince §9.3.3). The masks
are torch's ``nn.Dropout``, placed in every hidden (and conv) slot of the model.
"""

from __future__ import annotations

from torch import nn

from regcore.models.slots import SlotModel
from regcore.regularizer_specs import DropoutSpec
from regcore.regularizers.base import Regularizer


class Dropout(Regularizer):
    spec_class = DropoutSpec
    spec: DropoutSpec

    def configure_model(self, model: nn.Module) -> nn.Module:
        assert isinstance(model, SlotModel)
        for slot in model.slots("hidden", "conv"):
            slot.ops.append(nn.Dropout(self.spec.p))
        if self.spec.input_p > 0:
            for slot in model.slots("input"):
                slot.ops.append(nn.Dropout(self.spec.input_p))
        return model
