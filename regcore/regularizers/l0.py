"""L0 regularization by hard-concrete gates (Louizos, Welling & Kingma 2018, "Learning sparse
neural networks through L0 regularization").

Each weight (or, with ``group``, each hidden unit's row of incoming weights) of every hidden
``nn.Linear`` is multiplied by a gate z ∈ [0, 1]. In training

    u ~ U(0, 1),  s = sigmoid((log u − log(1−u) + log α)/β),  z = clamp(s·(ζ−γ) + γ, 0, 1)

with β = 2/3, γ = −0.1, ζ = 1.1 (the paper's values); the stretch beyond [0, 1] puts finite mass
on exactly 0 and exactly 1. The expected L0 norm is differentiable:

    P(z > 0) = sigmoid(log α − β·log(−γ/ζ)),

and the penalty is λ·Σ P(z > 0) over weights (a unit gate counts once per weight it gates, so
the penalty is always λ·E[#non-zero weights]). At eval the deterministic gate
z = clamp(sigmoid(log α)·(ζ−γ) + γ, 0, 1) is used. The gates are ``torch.nn.utils.parametrize``
parametrizations of the weight, so ``layer.weight`` is the gated weight everywhere.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

from regcore.models.slots import SlotModel
from regcore.regularizer_specs import L0Spec
from regcore.regularizers.base import Regularizer, Step

BETA, GAMMA, ZETA = 2.0 / 3.0, -0.1, 1.1
EPS = 1e-6


def sample_gate(log_alpha: torch.Tensor) -> torch.Tensor:
    """A hard-concrete sample z of log_alpha's shape (reparametrized, differentiable)."""
    u = torch.rand_like(log_alpha).clamp(EPS, 1.0 - EPS)
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / BETA)
    return torch.clamp(s * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def deterministic_gate(log_alpha: torch.Tensor) -> torch.Tensor:
    """The test-time gate clamp(sigmoid(log α)·(ζ−γ) + γ, 0, 1)."""
    return torch.clamp(torch.sigmoid(log_alpha) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def prob_nonzero(log_alpha: torch.Tensor) -> torch.Tensor:
    """P(z > 0) = sigmoid(log α − β·log(−γ/ζ)) per gate."""
    return torch.sigmoid(log_alpha - BETA * math.log(-GAMMA / ZETA))


def l0_penalty(log_alphas: list[torch.Tensor], sizes: list[int], strength: float) -> torch.Tensor:
    """λ·Σ_g size_g·P(z_g > 0): λ times the expected number of non-zero weights."""
    terms = [n * prob_nonzero(la).sum() for la, n in zip(log_alphas, sizes, strict=True)]
    return strength * torch.stack(terms).sum()


class HardConcreteGate(nn.Module):
    """Parametrization W ↦ W∘z; ``group`` gates rows (output units) of W."""

    def __init__(self, weight: torch.Tensor, group: bool, init_drop: float):
        super().__init__()
        self.group = group
        shape = (weight.shape[0], 1) if group else tuple(weight.shape)
        # Louizos et al.: log α = log(1 − p) − log p for an initial drop rate p
        init = math.log(1.0 - init_drop) - math.log(init_drop)
        self.log_alpha = nn.Parameter(
            torch.full(shape, init, device=weight.device, dtype=weight.dtype)
        )

    @property
    def per_gate(self) -> int:
        """How many weights one gate multiplies."""
        return int(self.weight_cols) if self.group else 1

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        self.weight_cols = weight.shape[1]
        z = sample_gate(self.log_alpha) if self.training else deterministic_gate(self.log_alpha)
        return weight * z


class L0(Regularizer):
    spec_class = L0Spec
    spec: L0Spec

    def configure_model(self, model: nn.Module) -> nn.Module:
        assert isinstance(model, SlotModel)
        self.gates: list[HardConcreteGate] = []
        for layer in model.hidden_linears():
            gate = HardConcreteGate(layer.weight, self.spec.group, self.spec.init_drop)
            gate.weight_cols = layer.weight.shape[1]
            parametrize.register_parametrization(layer, "weight", gate)
            self.gates.append(gate)
        return model

    def _sizes(self) -> list[int]:
        return [g.per_gate for g in self.gates]

    def penalty(self, step: Step) -> torch.Tensor | None:
        if not self.gates:
            return None
        return l0_penalty([g.log_alpha for g in self.gates], self._sizes(), self.spec.strength)

    @torch.no_grad()
    def extra_metrics(self, model: nn.Module) -> dict[str, float]:
        """``l0_expected_nonzero``: E[#non-zero gated weights]; ``l0_closed_fraction``: the
        fraction of gated weights whose deterministic (eval) gate is exactly 0."""
        if not self.gates:
            return {}
        expected = float(l0_penalty([g.log_alpha for g in self.gates], self._sizes(), 1.0))
        closed = sum(
            float((deterministic_gate(g.log_alpha) == 0).sum()) * g.per_gate for g in self.gates
        )
        total = sum(g.log_alpha.numel() * g.per_gate for g in self.gates)
        return {"l0_expected_nonzero": expected, "l0_closed_fraction": closed / total}
