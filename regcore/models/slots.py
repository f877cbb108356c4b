"""Places in a model where regularizers insert modules.

Every model routes its input and each hidden activation through a ``Slot``: an ordered list of
modules, empty (the identity) until a regularizer such as dropout appends to it. Slots make
"put dropout on every hidden layer" one loop, whatever the architecture.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

#: "step" slots sit inside a recurrent cell (called once per time step), "attention" on a
#: transformer's attention weights, "embedding" on its token embeddings.
SlotKind = Literal["input", "hidden", "conv", "step", "attention", "embedding"]


class Slot(nn.Module):
    """Applies its ops in order; the identity when it has none."""

    def __init__(self, kind: SlotKind):
        super().__init__()
        self.kind = kind
        self.ops = nn.ModuleList()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            x = op(x)
        return x

    def extra_repr(self) -> str:
        return f"kind={self.kind}"


class SlotModel(nn.Module):
    """Base of the built-in models: finds its slots and its hidden linear layers."""

    def slots(self, *kinds: SlotKind) -> list[Slot]:
        found = [m for m in self.modules() if isinstance(m, Slot)]
        return [s for s in found if not kinds or s.kind in kinds]

    def head(self) -> nn.Module:
        """The output layer."""
        raise NotImplementedError

    def hidden_linears(self) -> list[nn.Linear]:
        """Every nn.Linear but the output layer."""
        head = self.head()
        return [m for m in self.modules() if isinstance(m, nn.Linear) and m is not head]
