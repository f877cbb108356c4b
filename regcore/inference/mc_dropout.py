"""Dropout at test time: sampled sub-networks averaged by one of two rules.

The deterministic pass is the weight-scaling rule (Srivastava et al. 2014): with inverted dropout
the eval network is the identity-scaled one, and every run reports it. ``mc_dropout`` adds T
stochastic passes with the masks on, combined by ``rule``:

- ``arithmetic`` (Monte Carlo dropout, Gal & Ghahramani 2016): the mean of the passes'
  probabilities, p̄ = (1/T) Σ_t p_t; it approximates the predictive distribution of a Bayesian
  network, and the entropy of p̄ is its uncertainty. Keys ``mc_*``.
- ``geometric``: the normalized geometric mean of the sub-networks' probabilities,
  p̃(y) ∝ Π_t p_t(y)^{1/T} = softmax((1/T) Σ_t log p_t) = softmax of the mean logits (Srivastava
  et al. 2014 §7.5; Baldi & Sadowski 2013): over all masks, weighted by their probabilities, it is
  exactly what weight scaling computes for dropout before a softmax layer, and weight scaling
  approximates it in deeper networks. Keys ``gm_*``. For regression both rules average the
  outputs (the geometric mean of equal-variance Gaussians is centred on their mean).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

from regcore.data import Dataset
from regcore.training.metrics import data_loss

Rule = Literal["arithmetic", "geometric"]
#: the metric-key prefix of each rule
PREFIX: dict[str, str] = {"arithmetic": "mc_", "geometric": "gm_"}


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


def combine_passes(outs: torch.Tensor, rule: str) -> torch.Tensor:
    """Class probabilities ``[N, C]`` from the logits of T passes ``[T, N, C]`` by ``rule``."""
    if rule == "geometric":
        return outs.mean(0).softmax(-1)  # softmax(mean log p_t): log_softmax shifts each z_t
    return outs.softmax(-1).mean(0)


@torch.no_grad()
def mc_metrics(
    model: nn.Module, data: Dataset, passes: int, rule: str = "arithmetic"
) -> dict[str, float]:
    """``<prefix>test_loss``, ``<prefix>test_acc`` and ``<prefix>predictive_entropy``
    (classification), or ``<prefix>test_loss`` and ``<prefix>predictive_var`` (regression) on
    the test split; the prefix is ``mc_`` for the arithmetic rule, ``gm_`` for the geometric."""
    outs = mc_outputs(model, data.test.x, passes)
    y = data.test.y
    pre = PREFIX[rule]
    if data.task == "classification":
        probs = combine_passes(outs, rule)
        return {
            f"{pre}test_loss": float(nn.functional.nll_loss(probs.clamp_min(1e-12).log(), y)),
            f"{pre}test_acc": float((probs.argmax(1) == y).float().mean()),
            f"{pre}predictive_entropy": float(predictive_entropy(probs).mean()),
        }
    mean = outs.mean(0)
    return {
        f"{pre}test_loss": float(data_loss(mean, y, "regression")),
        f"{pre}predictive_var": float(outs.var(0, unbiased=False).mean()),
    }
