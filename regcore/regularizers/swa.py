"""Stochastic weight averaging (Izmailov et al. 2018, "Averaging weights leads to wider optima").

From epoch ⌈start·E⌉ on, the iterates are averaged, w̄ ← w̄ + (w − w̄)/(n + 1), once per epoch
(or after every step with ``every: step``), while SWALR anneals the rate to a constant
``swa_lr``. The average lies nearer the centre of the flat region SGD circles in, so its test
loss is below the last iterate's. Batch-norm statistics are not averaged: at the end they are
recomputed for w̄ with one pass over the last epoch's training batches (``update_bn``).

Uses ``torch.optim.swa_utils`` (AveragedModel, SWALR, update_bn). ``finalize`` returns the
averaged model's module.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel, update_bn

from regcore.regularizer_specs import SWASpec
from regcore.regularizers.base import Regularizer, Step, TaskInfo


def running_average(avg: torch.Tensor, value: torch.Tensor, n: int) -> torch.Tensor:
    """The mean of n + 1 values given the mean of the first n: avg + (value − avg)/(n + 1)."""
    return avg + (value - avg) / (n + 1)


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


class SWA(Regularizer):
    spec_class = SWASpec
    spec: SWASpec

    def __init__(self, spec: SWASpec, task: TaskInfo):
        super().__init__(spec, task)
        #: first epoch (from 1) whose weights enter the average
        self.start_epoch = min(task.epochs, math.floor(spec.start * task.epochs) + 1)
        self.batches: list[torch.Tensor] = []

    def setup(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.averaged = AveragedModel(model)
        self.scheduler = (
            SWALR(optimizer, self.spec.swa_lr, anneal_epochs=self.spec.anneal_epochs)
            if self.spec.swa_lr is not None
            else None
        )
        self.bn = has_batch_norm(model)

    def _averaging(self, epoch: int) -> bool:
        return epoch >= self.start_epoch

    def before_forward(self, step: Step) -> None:
        # update_bn needs inputs; keep references to the current epoch's batches (no copies)
        if self.bn and self._averaging(step.epoch + 1):
            if step.index % self.task.steps_per_epoch == 0:
                self.batches = []
            self.batches.append(step.x)

    def after_optimizer_step(self, step: Step) -> None:
        if self.spec.every == "step" and self._averaging(step.epoch + 1):
            self.averaged.update_parameters(step.model)

    def on_epoch_end(self, epoch: int, metrics: dict[str, float], model: nn.Module) -> None:
        if not self._averaging(epoch):
            return
        if self.spec.every == "epoch":
            self.averaged.update_parameters(model)
        if self.scheduler is not None:
            self.scheduler.step()

    def extra_metrics(self, model: nn.Module) -> dict[str, float]:
        return {"swa_n_averaged": float(self.averaged.n_averaged)}

    def finalize(self, model: nn.Module) -> nn.Module:
        if int(self.averaged.n_averaged) == 0:
            return model
        averaged = self.averaged.module
        if self.bn and self.batches:
            update_bn(self.batches, averaged)
        return averaged

    def state_dict(self) -> dict[str, Any]:
        return {"averaged": self.averaged.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.averaged.load_state_dict(state["averaged"])
