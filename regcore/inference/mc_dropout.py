"""Monte Carlo dropout (Gal & Ghahramani 2016): keep the dropout masks on at evaluation.

T stochastic passes approximate the predictive distribution of a Bayesian network: the mean of
the passes' probabilities is the prediction, and the entropy of that mean is its uncertainty.
It is reported beside the deterministic pass (the weight-scaling rule, Srivastava et al. 2014),
which it should be close to.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

from regcore.data import Dataset
from regcore.training.metrics import data_loss


def predictive_entropy(probs: torch.Tensor) -> torch.Tensor:
    """H(p̄) = −Σ_c p̄_c log p̄_c per example, for mean probabilities ``[N, C]``."""
    return -(probs * probs.clamp_min(torch.finfo(probs.dtype).tiny).log()).sum(-1)


def dropout_on(model: nn.Module) -> list[nn.Module]:
    """Put the model in eval mode except its dropout modules; return those modules."""
    model.eval()
    drops: list[nn.Module] = [m for m in model.modules() if isinstance(m, _DropoutNd)]
    for m in drops:
        m.train()
    return drops


@torch.no_grad()
def mc_outputs(model: nn.Module, x: torch.Tensor, passes: int) -> torch.Tensor:
    """``passes`` stochastic forward passes, stacked ``[T, N, C]``; the model's mode is restored."""
    was = model.training
    try:
        if not dropout_on(model):
            raise ValueError("mc_dropout: the model has no dropout module to sample")
        return torch.stack([model(x) for _ in range(passes)])
    finally:
        model.train(was)


@torch.no_grad()
def mc_metrics(model: nn.Module, data: Dataset, passes: int) -> dict[str, float]:
    """``mc_test_loss``, ``mc_test_acc`` and ``mc_predictive_entropy`` (classification), or
    ``mc_test_loss`` and ``mc_predictive_var`` (regression) on the test split."""
    outs = mc_outputs(model, data.test.x, passes)
    y = data.test.y
    if data.task == "classification":
        probs = outs.softmax(-1).mean(0)
        return {
            "mc_test_loss": float(nn.functional.nll_loss(probs.clamp_min(1e-12).log(), y)),
            "mc_test_acc": float((probs.argmax(1) == y).float().mean()),
            "mc_predictive_entropy": float(predictive_entropy(probs).mean()),
        }
    mean = outs.mean(0)
    return {
        "mc_test_loss": float(data_loss(mean, y, "regression")),
        "mc_predictive_var": float(outs.var(0, unbiased=False).mean()),
    }
