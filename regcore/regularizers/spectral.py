"""Spectral-norm regularization of every weight matrix.

* ``penalty``: ½λΣ_W σ_max(W)² (Yoshida & Miyato 2017, "Spectral norm regularization for improving
  the generalizability of deep learning"). σ_max = uᵀWv with u, v from power iteration; the
  vectors persist across steps, so one iteration per step suffices (as in torch's
  ``spectral_norm``), and the gradient of σ_max is u vᵀ.
* ``project``: after every optimizer step W ← W / max(1, σ_max/c) (Gouk et al. 2021,
  "Regularisation of neural networks by enforcing Lipschitz continuity").

A conv kernel [out, in, k] is treated as the matrix [out, in·k]; its σ_max is then a proxy for the
layer's operator norm (exact only for linear layers). The product of the σ_max is the
``lipschitz_bound`` the measurements report.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from regcore.models.params import named_penalized
from regcore.regularizer_specs import SpectralSpec
from regcore.regularizers.base import Regularizer, Step


@torch.no_grad()
def power_iteration(
    w: torch.Tensor, u: torch.Tensor, v: torch.Tensor, steps: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``steps`` rounds of v ← Wᵀu/‖·‖, u ← Wv/‖·‖ on the matrix ``w``; returns (u, v)."""
    for _ in range(steps):
        v = F.normalize(w.t() @ u, dim=0, eps=1e-12)
        u = F.normalize(w @ v, dim=0, eps=1e-12)
    return u, v


def sigma_max(w: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """uᵀWv: σ_max once u, v have converged; differentiable in W (gradient u vᵀ)."""
    return torch.dot(u, w @ v)


def spectral_penalty(sigmas: list[torch.Tensor], strength: float) -> torch.Tensor:
    """½λΣσ²."""
    return 0.5 * strength * torch.stack(sigmas).pow(2).sum()


def project_weight(w: torch.Tensor, sigma: torch.Tensor, c: float) -> torch.Tensor:
    """W / max(1, σ/c): unchanged when σ ≤ c, else rescaled to σ = c."""
    return w / torch.clamp(sigma / c, min=1.0)


def _matrix(p: torch.Tensor) -> torch.Tensor:
    return p.reshape(p.shape[0], -1)


class Spectral(Regularizer):
    spec_class = SpectralSpec
    spec: SpectralSpec

    def setup(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.params = [p for _, p in named_penalized(model) if p.dim() >= 2]
        gen = torch.Generator().manual_seed(0)
        self.us: list[torch.Tensor] = []
        self.vs: list[torch.Tensor] = []
        for p in self.params:
            m = _matrix(p)
            u = F.normalize(torch.randn(m.shape[0], generator=gen), dim=0).to(p.device, p.dtype)
            v = F.normalize(torch.randn(m.shape[1], generator=gen), dim=0).to(p.device, p.dtype)
            # a few extra rounds at the start so the first steps already see σ_max, not a guess
            self.us.append(u)
            self.vs.append(v)
            self._iterate(len(self.us) - 1, 10)

    def _iterate(self, i: int, steps: int) -> None:
        self.us[i], self.vs[i] = power_iteration(
            _matrix(self.params[i]).detach(), self.us[i], self.vs[i], steps
        )

    def sigmas(self) -> list[torch.Tensor]:
        out = []
        for i, p in enumerate(self.params):
            self._iterate(i, self.spec.power_iterations)
            out.append(sigma_max(_matrix(p), self.us[i], self.vs[i]))
        return out

    def penalty(self, step: Step) -> torch.Tensor | None:
        if self.spec.mode != "penalty" or not self.params:
            return None
        return spectral_penalty(self.sigmas(), self.spec.strength)

    @torch.no_grad()
    def after_optimizer_step(self, step: Step) -> None:
        if self.spec.mode != "project":
            return
        for p, sigma in zip(self.params, self.sigmas(), strict=True):
            p.copy_(project_weight(p, sigma, self.spec.c))

    def state_dict(self) -> dict:
        return {"u": list(self.us), "v": list(self.vs)}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.us = [t.to(u.device, u.dtype) for t, u in zip(state["u"], self.us, strict=True)]
            self.vs = [t.to(v.device, v.dtype) for t, v in zip(state["v"], self.vs, strict=True)]
