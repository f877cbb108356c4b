"""Last-layer Laplace approximation (MacKay 1992; Daxberger et al. 2021, "Laplace redux");
Prince §9.3.5.

Training is MAP under the Gaussian prior N(0, σ²_prior) on the weights: the prior's penalty
λΣw², λ = 1/(2·N·σ²_prior) (``regcore/bayes/prior.py``), is added to the loss. After training,
around the returned (MAP) model, the weights W [K, H] of the output layer get the Gaussian
posterior N(W_MAP, Σ) with Σ⁻¹ the Hessian of the summed negative log posterior in W, by its
generalized Gauss-Newton form (exact for softmax cross-entropy in a linear last layer):

    Σ⁻¹ = Σᵢ (diag(pᵢ) − pᵢpᵢᵀ) ⊗ φᵢφᵢᵀ + I/σ²_prior

with φᵢ the last layer's input and pᵢ the MAP softmax of training example i. ``hessian: full``
keeps the whole K·H × K·H matrix (the spec refuses it above 4,096 output-layer weights where the
model says its width; else the fit stops the run with an error naming ``hessian: diag``), ``diag``
its diagonal
Σᵢ pᵢₖ(1 − pᵢₖ)φᵢⱼ² + 1/σ²_prior. The body and the output bias stay at their MAP values.

The predictive of x has logits f ~ N(W_MAP φ + b, Λ), Λ = J Σ Jᵀ with J = I_K ⊗ φᵀ.
``predictive: probit`` uses the probit approximation softmax(fₖ/√(1 + π/8·Λₖₖ)) (MacKay 1992);
``sampling`` averages the softmax over ``samples`` draws of W. The summary's ``test_loss``,
``test_acc`` and ``ece`` stay MAP's; beside them it holds ``laplace_val_loss``, ``_val_acc``,
``_test_loss``, ``_test_acc``, ``_ece`` and ``_confidence`` (the fit runs once, after training).
Classification only. Effect: on small-data MNIST-1D the predictive's ECE is below MAP's at
about its accuracy (with K > 2 classes each logit is scaled by its own variance, so the probit
predictive's arg max may differ from MAP's).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from regcore.bayes.predictive import mean_probs, predictive_metrics
from regcore.bayes.prior import PriorRegularizer
from regcore.regularizer_specs import LAPLACE_MAX_FULL as MAX_FULL
from regcore.regularizer_specs import LaplaceSpec


@torch.no_grad()
def head_inputs(model: nn.Module, head: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """φ: what the output layer receives for inputs ``x``, model in eval mode, ``[N, H]``."""
    seen: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    was = model.training
    model.eval()
    try:
        for i in range(0, x.shape[0], 8192):
            model(x[i : i + 8192])
    finally:
        handle.remove()
        model.train(was)
    phi = torch.cat(seen)
    if phi.dim() != 2:
        raise ValueError(
            f"laplace: the output layer's input has shape {tuple(phi.shape)}, not [N, H]"
        )
    return phi


@dataclass
class LastLayerPosterior:
    """N(W_MAP, Σ) over the output layer's weights; ``cov`` is Σ (full) or its diagonal [K, H]."""

    weight: torch.Tensor  # [K, H], float64
    bias: torch.Tensor  # [K]
    cov: torch.Tensor  # [K·H, K·H] or [K, H]
    full: bool

    def logit_var(self, phi: torch.Tensor) -> torch.Tensor:
        """Λₖₖ = φᵀ Σₖₖ φ per example and class, ``[N, K]``."""
        if not self.full:
            return phi.pow(2) @ self.cov.T
        k, h = self.weight.shape
        blocks = torch.diagonal(self.cov.view(k, h, k, h), dim1=0, dim2=2)  # [H, H, K]
        return torch.einsum("jmk,nj,nm->nk", blocks, phi, phi)

    def probit(self, phi: torch.Tensor) -> torch.Tensor:
        mean = phi @ self.weight.T + self.bias
        return (mean / torch.sqrt(1 + math.pi / 8 * self.logit_var(phi))).softmax(-1)

    def draws(self, phi: torch.Tensor, samples: int) -> Iterator[torch.Tensor]:
        """Logits of ``samples`` draws of W."""
        root = torch.linalg.cholesky(self.cov) if self.full else self.cov.sqrt()
        for _ in range(samples):
            z = torch.randn_like(self.weight)
            noise = (root @ z.reshape(-1)).view_as(z) if self.full else root * z
            yield phi @ (self.weight + noise).T + self.bias


def fit_last_layer(
    phi: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, prior_var: float, full: bool
) -> LastLayerPosterior:
    """The GGN posterior above from training features ``phi`` [N, H] (float64 inside)."""
    phi, w, b = phi.double(), weight.detach().double(), bias.detach().double()
    p = (phi @ w.T + b).softmax(-1)
    k, h = w.shape
    if not full:
        precision = p.mul(1 - p).T @ phi.pow(2) + 1.0 / prior_var
        return LastLayerPosterior(w, b, 1.0 / precision, full=False)
    a = torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)  # [N, K, K]
    outer = phi.unsqueeze(2) * phi.unsqueeze(1)  # [N, H, H]
    # Σᵢ Aᵢ ⊗ φᵢφᵢᵀ as one matrix product over i, then (k, l, j, m) → (k, j, l, m)
    ggn = (a.reshape(-1, k * k).T @ outer.reshape(-1, h * h)).view(k, k, h, h)
    ggn = ggn.permute(0, 2, 1, 3).reshape(k * h, k * h)
    precision = ggn + torch.eye(k * h, dtype=ggn.dtype, device=ggn.device) / prior_var
    cov = torch.cholesky_inverse(torch.linalg.cholesky(precision))
    return LastLayerPosterior(w, b, cov, full=True)


class Laplace(PriorRegularizer):
    spec_class = LaplaceSpec
    spec: LaplaceSpec

    def fit(self, model: nn.Module) -> tuple[nn.Module, LastLayerPosterior]:
        head = model.head()  # type: ignore[operator]
        if not isinstance(head, nn.Linear):
            raise ValueError(f"laplace needs a linear output layer, not {type(head).__name__}")
        full = self.spec.hessian == "full"
        if full and head.weight.numel() > MAX_FULL:
            raise ValueError(
                f"laplace.hessian full: the output layer has {head.weight.numel():,} weights, "
                f"more than {MAX_FULL:,}; use hessian diag"
            )
        bias = (
            head.bias
            if head.bias is not None
            else torch.zeros(head.out_features, device=head.weight.device)
        )
        was = head.training
        head.eval()  # a parametrized weight (l0's gates) as the eval-mode forward uses it
        try:
            weight = head.weight.detach()
        finally:
            head.train(was)
        phi = head_inputs(model, head, self.data.train.x)
        return head, fit_last_layer(phi, weight, bias, self.spec.prior_var, full)

    def final_metrics(self, model: nn.Module) -> dict[str, float]:
        head, post = self.fit(model)
        spec = self.spec

        def predict(x: torch.Tensor) -> torch.Tensor:
            phi = head_inputs(model, head, x).double()
            if spec.predictive == "probit":
                return post.probit(phi).float()
            return mean_probs(post.draws(phi, spec.samples)).float()

        return predictive_metrics(predict, self.data, self.name)
