"""Bayes by Backprop (Blundell et al. 2015, "Weight uncertainty in neural networks"); Prince
§9.3.5 and its notes (variational Bayes).

Each weight of every Linear and Conv layer gets a Gaussian posterior q(w) = N(μ, s²), s =
softplus(ρ), independent of the others (mean-field). The weight is a ``torch.nn.utils.parametrize``
parametrization of its μ: in training every forward pass draws w = μ + s·ε, ε ~ N(0, 1) (the
reparameterisation trick, so the data loss's gradient reaches μ and ρ); in eval mode it is μ.
Biases and normalization parameters stay point estimates (flat prior), as l2 leaves them.

The objective is the negative ELBO per example: the mean data loss at the sampled weights (one
draw per step) plus KL(q ‖ N(0, σ²_prior)) / N, with N the training examples and
KL = Σ [log(σ_prior/s) + (s² + μ²)/(2σ²_prior) − ½]. Its gradient in μ is μ/(N·σ²_prior), the
gradient of l2 with λ = 1/(2·N·σ²_prior) (``regcore/bayes/prior.py``): as s → 0 the objective is
MAP under the prior. The KL term is logged as ``penalty_bayes_by_backprop``.

The returned model is the network at the posterior means μ (eval mode), the point estimate whose
``test_loss``, ``test_acc`` and ``ece`` the summary holds. Beside them, each epoch and in the
summary, the predictive meanₛ softmax(f(x; wₛ)) over ``samples`` weight draws (the rest of the
model in eval mode) is scored as ``bayes_by_backprop_val_loss``, ``_val_acc``, ``_test_loss``,
``_test_acc``, ``_ece`` and ``_confidence``; ``bayes_by_backprop_mean_std`` is the mean s.
Classification only. Effect: on small-data MNIST-1D the predictive's ECE is below the means'.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from regcore.bayes.predictive import mean_probs, predictive_metrics
from regcore.models.params import underlying_weight
from regcore.regularizer_specs import BayesByBackpropSpec
from regcore.regularizers.base import Regularizer, Step
from regcore.regularizers.swa import rng_untouched

LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


def inverse_softplus(s: float) -> float:
    """ρ with softplus(ρ) = s."""
    return s + math.log(-math.expm1(-s))


def gaussian_kl(mu: torch.Tensor, std: torch.Tensor, prior_var: float) -> torch.Tensor:
    """KL(N(μ, s²) ‖ N(0, σ²_prior)) summed over the elements."""
    var = std.pow(2)
    return (0.5 * math.log(prior_var) - std.log() + (var + mu.pow(2)) / (2 * prior_var) - 0.5).sum()


class GaussianWeight(nn.Module):
    """w = μ + softplus(ρ)·ε in training, μ in eval mode; ρ is this module's parameter."""

    def __init__(self, mu: torch.Tensor, init_std: float):
        super().__init__()
        self.rho = nn.Parameter(torch.full_like(mu.detach(), inverse_softplus(init_std)))

    def std(self) -> torch.Tensor:
        return F.softplus(self.rho)

    def forward(self, mu: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return mu
        return mu + self.std() * torch.randn_like(mu)


def gaussian_layers(model: nn.Module) -> list[tuple[nn.Module, GaussianWeight]]:
    """Each layer whose weight has a Gaussian posterior, with that posterior."""
    out = []
    for m in model.modules():
        if parametrize.is_parametrized(m, "weight"):
            found = [g for g in m.parametrizations.weight if isinstance(g, GaussianWeight)]  # type: ignore[union-attr]
            out += [(m, g) for g in found]
    return out


class BayesByBackprop(Regularizer):
    spec_class = BayesByBackpropSpec
    spec: BayesByBackpropSpec

    def bind_data(self, data: Any) -> None:
        self.data = data
        self.n = len(data.train)

    def configure_model(self, model: nn.Module) -> nn.Module:
        layers = [m for m in model.modules() if isinstance(m, LAYERS)]
        for m in layers:
            weight = m.weight  # type: ignore[union-attr]
            parametrize.register_parametrization(
                m, "weight", GaussianWeight(weight, self.spec.init_std)
            )
        return model

    def setup(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        #: (μ, its posterior) per layer; μ is the parametrization's ``original``
        self.posteriors: list[tuple[torch.Tensor, GaussianWeight]] = [
            (underlying_weight(m), g) for m, g in gaussian_layers(model)
        ]

    def kl(self) -> torch.Tensor:
        terms = [gaussian_kl(mu, g.std(), self.spec.prior_var) for mu, g in self.posteriors]
        return torch.stack(terms).sum()

    def penalty(self, step: Step) -> torch.Tensor:
        return self.kl() / self.n

    @torch.no_grad()
    def _predict(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """meanₛ softmax over weight draws, the rest of the model in eval mode."""
        was = model.training
        model.eval()
        for _, g in self.posteriors:
            g.train()
        try:
            return mean_probs(model(x) for _ in range(self.spec.samples))
        finally:
            model.train(was)

    def _metrics(self, model: nn.Module) -> dict[str, float]:
        out = predictive_metrics(lambda x: self._predict(model, x), self.data, self.name)
        stds = torch.cat([g.std().detach().reshape(-1) for _, g in self.posteriors])
        return {**out, f"{self.name}_mean_std": float(stds.mean())}

    def extra_metrics(self, model: nn.Module) -> dict[str, float]:
        with rng_untouched(self.task.device):  # the draws leave training's random stream alone
            return self._metrics(model)

    def final_metrics(self, model: nn.Module) -> dict[str, float]:
        return self._metrics(model)
