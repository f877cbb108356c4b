"""The fraction of hidden activations that are exactly zero on the test split.

Read at the model's hidden and conv slots (after the activation), in eval mode, so it measures
the representation's sparsity (what ``activation_l1`` pushes up, Goodfellow et al. 2016 §7.10)
and not dropout's zeros.
"""

from __future__ import annotations

import torch
from torch import nn

from regcore.data import Split
from regcore.models.slots import SlotModel


def zero_fraction(activations: list[torch.Tensor]) -> float:
    zeros = sum(int((a == 0).sum()) for a in activations)
    total = sum(a.numel() for a in activations)
    return zeros / total if total else 0.0


@torch.no_grad()
def activation_sparsity(model: nn.Module, split: Split) -> float | None:
    slots = model.slots("hidden", "conv") if isinstance(model, SlotModel) else []
    if not slots:
        return None
    seen: list[torch.Tensor] = []
    handles = [s.register_forward_hook(lambda _m, _i, out: seen.append(out)) for s in slots]
    try:
        model(split.x)
    finally:
        for h in handles:
            h.remove()
    return zero_fraction(seen)
