"""A GRU (Cho et al. 2014) that reads a feature vector as a sequence, one feature per step.

MNIST-1D's 40 features become 40 time steps of one input. The cell is written out and unrolled in
Python so that per-step slots can sit on the cell's input and on the recurrent state: a
``StepSlot`` is told when a sequence begins (``begin``) and its ops may draw state there, which is
how variational dropout (Gal & Ghahramani 2016) reuses one mask at every step. The last hidden
state passes through an ordinary ``Slot("hidden")`` before the linear head, so plain dropout
regularizes the read-out and never the recurrence.
"""

from __future__ import annotations

import torch
from torch import nn

from regcore.models.slots import Slot, SlotModel


class StepSlot(Slot):
    """A slot applied at every time step; ``begin(x)`` lets its ops draw per-sequence state."""

    def __init__(self, role: str):
        super().__init__("step")
        self.role = role  # "input" (x_t) or "state" (h_{t-1})

    def begin(self, like: torch.Tensor) -> None:
        for op in self.ops:
            start = getattr(op, "begin", None)
            if start is not None:
                start(like)

    def extra_repr(self) -> str:
        return f"kind=step, role={self.role}"


class GRUCell(nn.Module):
    """torch's GRU equations, with the state seen by the gates routed through a slot.

    Only the gates' view of h_{t-1} is masked; the carry z∘h_{t-1} is not, as in Gal &
    Ghahramani's recurrent dropout, so a dropped unit does not erase the memory.
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.ih = nn.Linear(input_size, 3 * hidden_size)
        self.hh = nn.Linear(hidden_size, 3 * hidden_size)

    def forward(self, x: torch.Tensor, h: torch.Tensor, h_gates: torch.Tensor) -> torch.Tensor:
        xr, xz, xn = self.ih(x).chunk(3, dim=1)
        hr, hz, hn = self.hh(h_gates).chunk(3, dim=1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h


class GRU(SlotModel):
    def __init__(self, in_features: int, out_features: int, hidden_size: int):
        super().__init__()
        self.input_slot = Slot("input")
        self.hidden_size = hidden_size
        self.cell = GRUCell(1, hidden_size)
        self.step_input = StepSlot("input")
        self.step_state = StepSlot("state")
        self.post = Slot("hidden")
        self.out = nn.Linear(hidden_size, out_features)

    def head(self) -> nn.Module:
        return self.out

    def step_slots(self) -> list[StepSlot]:
        return [self.step_input, self.step_state]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_slot(x)
        h = x.new_zeros(x.shape[0], self.hidden_size)
        self.step_input.begin(x[:, :1])
        self.step_state.begin(h)
        for t in range(x.shape[1]):
            h = self.cell(self.step_input(x[:, t : t + 1]), h, self.step_state(h))
        return self.out(self.post(h))
