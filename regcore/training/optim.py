"""Optimizers and learning-rate schedules from a ``TrainSpec``.

Regularization never hides in optimizer arguments (CONTRACT §1): weight decay is the
``weight_decay`` regularizer, so every optimizer here is built with ``weight_decay=0``.
"""

from __future__ import annotations

import torch
from torch import nn

from regcore.spec import TrainSpec


def build_optimizer(model: nn.Module, train: TrainSpec) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if train.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=train.lr, momentum=train.momentum, nesterov=train.nesterov, weight_decay=0.0
        )
    if train.optimizer == "adam":
        return torch.optim.Adam(params, lr=train.lr, betas=train.betas, weight_decay=0.0)
    return torch.optim.AdamW(params, lr=train.lr, betas=train.betas, weight_decay=0.0)


def build_scheduler(
    optimizer: torch.optim.Optimizer, train: TrainSpec
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Stepped once per epoch; None for a constant rate."""
    if train.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, train.step_size, train.gamma)
    if train.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=train.epochs)
    return None


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])
