"""Metrics of a posterior-predictive distribution, named beside the point estimate's.

Each Bayesian regularizer averages class probabilities over its posterior (samples, or the
probit approximation) and reports, under its own prefix, the same figures ``evaluate`` gives
the returned model: ``<prefix>_val_loss``, ``_val_acc``, ``_test_loss``, ``_test_acc``, ``_ece``
(15 bins, test split) and ``_confidence``. The loss is the negative log of the averaged
probability, −log meanₛ p(y|x, φₛ), which is what the posterior predictive scores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

from regcore.data import Dataset
from regcore.training.metrics import expected_calibration_error

SPLITS = ("val", "test")


def mean_probs(draws: Iterable[torch.Tensor]) -> torch.Tensor:
    """The average of softmax(logits) over draws of logits ``[N, C]``."""
    total: torch.Tensor | None = None
    count = 0
    for logits in draws:
        probs = logits.softmax(-1)
        total = probs if total is None else total + probs
        count += 1
    if total is None:
        raise ValueError("no posterior draws to average")
    return total / count


def probs_metrics(probs: dict[str, torch.Tensor], data: Dataset, prefix: str) -> dict[str, float]:
    """The figures above from predictive probabilities ``{"val": [N, C], "test": [N, C]}``."""
    out: dict[str, float] = {}
    for split in SPLITS:
        p, y = probs[split], getattr(data, split).y
        out[f"{prefix}_{split}_loss"] = float(
            F.nll_loss(p.clamp_min(torch.finfo(p.dtype).tiny).log(), y)
        )
        out[f"{prefix}_{split}_acc"] = float((p.argmax(1) == y).float().mean())
    out[f"{prefix}_ece"] = expected_calibration_error(probs["test"], data.test.y)
    out[f"{prefix}_confidence"] = float(probs["test"].max(1).values.mean())
    return out


@torch.no_grad()
def predictive_metrics(
    predict: Callable[[torch.Tensor], torch.Tensor], data: Dataset, prefix: str
) -> dict[str, float]:
    """``predict(x)`` gives the predictive probabilities of inputs ``x``; score val and test."""
    return probs_metrics({s: predict(getattr(data, s).x) for s in SPLITS}, data, prefix)
