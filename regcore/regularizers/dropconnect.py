"""DropConnect (Wan et al. 2013): a Bernoulli mask on the weights, y = f((R∘W)x).

Antczak eq. 12: each weight of a layer is kept with probability 1−p. Following the catalog's
convention for every ``p``, kept weights are scaled by 1/(1−p) in training, so E[R∘W/(1−p)] = W
and the eval pass uses W exactly (the weight-scaling rule rather than Wan et al.'s Gaussian
moment-matching inference).

Where: every hidden ``nn.Linear`` of the model (``model.hidden_linears()``), not the output
layer, as in Wan et al., whose DropConnect layer is the fully connected layer that feeds the
classifier; masking the head would drop whole class scores' inputs at random. Convolutions are
left alone.

One mask is drawn per mini-batch and shared by its examples (Wan et al. draw one per example,
which costs a [B, out, in] tensor); the estimator of the gradient stays unbiased.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from regcore.models.slots import SlotModel
from regcore.regularizer_specs import DropConnectSpec
from regcore.regularizers.base import Regularizer


def dropconnect_weight(weight: torch.Tensor, mask: torch.Tensor, p: float) -> torch.Tensor:
    """R∘W/(1−p) for a 0/1 ``mask`` R of W's shape."""
    return weight * mask / (1.0 - p)


def draw_mask(weight: torch.Tensor, p: float) -> torch.Tensor:
    """R with entries 1 with probability 1−p, on W's device and dtype."""
    return torch.empty_like(weight).bernoulli_(1.0 - p)


class DropConnectLinear(nn.Module):
    """Wraps an ``nn.Linear``: masked weights in training, the linear layer itself at eval.

    The wrapped layer keeps its own ``weight`` and ``bias`` parameters, so anything that edits
    them in place (max-norm, weight noise, checkpoints) still sees the real W.
    """

    def __init__(self, linear: nn.Linear, p: float):
        super().__init__()
        self.linear = linear
        self.p = p
        # running count of kept and drawn weights (tensors, so no host sync per step)
        self.kept = torch.zeros(())
        self.drawn = torch.zeros(())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return self.linear(x)
        w = self.linear.weight
        mask = draw_mask(w, self.p)
        self.kept = self.kept.to(w.device) + mask.sum()
        self.drawn = self.drawn.to(w.device) + mask.numel()
        return F.linear(x, dropconnect_weight(w, mask, self.p), self.linear.bias)

    def take_counts(self) -> tuple[float, float]:
        """(kept, drawn) weights since the last call; resets the counts."""
        counts = float(self.kept), float(self.drawn)
        self.kept, self.drawn = torch.zeros(()), torch.zeros(())
        return counts

    def extra_repr(self) -> str:
        return f"p={self.p}"


class DropConnect(Regularizer):
    spec_class = DropConnectSpec
    spec: DropConnectSpec

    def configure_model(self, model: nn.Module) -> nn.Module:
        assert isinstance(model, SlotModel)
        targets = {id(m) for m in model.hidden_linears()}
        self.layers: list[DropConnectLinear] = []
        # collect first: replacing children while iterating named_modules would skip some
        parents = [
            (parent, name, child)
            for parent in model.modules()
            for name, child in parent.named_children()
            if id(child) in targets
        ]
        for parent, name, child in parents:
            assert isinstance(child, nn.Linear)
            wrapped = DropConnectLinear(child, self.spec.p)
            setattr(parent, name, wrapped)
            self.layers.append(wrapped)
        return model

    def extra_metrics(self, model: nn.Module) -> dict[str, float]:
        """``dropconnect_keep_rate``: the fraction of weights kept over the epoch's masks."""
        counts = [layer.take_counts() for layer in self.layers]
        kept, drawn = sum(c[0] for c in counts), sum(c[1] for c in counts)
        return {"dropconnect_keep_rate": kept / drawn} if drawn else {}
