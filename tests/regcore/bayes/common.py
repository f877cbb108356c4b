"""Helpers of the Bayesian methods' tests (their effect runs: scripts/bayes_calibration.py)."""

from __future__ import annotations

import torch

from regcore.training.loop import Trainer


def first_batch(tr: Trainer) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = tr.data.train.x[:50], tr.data.train.y[:50]
    return x, y


def params(tr: Trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in tr.model.parameters()]
