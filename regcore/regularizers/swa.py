"""Stochastic weight averaging (Izmailov et al. 2018, "Averaging weights leads to wider optima").

From epoch ⌈start·E⌉ on, the iterates are averaged, w̄ ← w̄ + (w − w̄)/(n + 1), once per epoch
(or after every step with ``every: step``), while SWALR anneals the rate to a constant
``swa_lr`` (in those epochs the run's own lr schedule is not stepped, as in torch's recipe).
The average lies nearer the centre of the flat region SGD circles in, so its test loss is below
the last iterate's. Batch-norm statistics are not averaged: at the end they are recomputed for
w̄ with one pass over the last epoch's training batches (``update_bn``).

Uses ``torch.optim.swa_utils`` (AveragedModel, SWALR, update_bn). ``finalize`` returns the
averaged model's module.

Each epoch, once averaging has started, the averaged model's validation loss (and accuracy) is
recorded as ``swa_val_loss`` (``swa_val_acc``), in eval mode; with batch norm its statistics are
first recomputed on the epoch's batches under a forked RNG, so the raw run is unchanged.

With early stopping: the spec refuses ``early_stopping`` with ``restore_best`` beside swa (or
ema), since restoring the best raw iterate and returning the average are two answers to "which
model is kept". Set ``restore_best: false`` to stop early and keep the average (of the iterates
up to the stop); the summary's ``best_epoch`` still names the raw model's best epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel, update_bn

from regcore.regularizer_specs import SWASpec
from regcore.regularizers.base import Regularizer, Step, TaskInfo
from regcore.training.metrics import split_metrics


def running_average(avg: torch.Tensor, value: torch.Tensor, n: int) -> torch.Tensor:
    """The mean of n + 1 values given the mean of the first n: avg + (value − avg)/(n + 1)."""
    return avg + (value - avg) / (n + 1)


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@contextmanager
def rng_untouched(device: torch.device) -> Iterator[None]:
    """Random numbers drawn inside leave the global generators (CPU and this GPU) as they were."""
    devices: list[int] = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        yield


def averaged_val_metrics(model: nn.Module, data: Any, prefix: str) -> dict[str, float]:
    """``<prefix>_val_loss`` (and ``_val_acc``) of ``model`` in eval mode, its mode restored."""
    was_training = model.training
    model.eval()
    try:
        m, _ = split_metrics(model, data.val, data.task)
    finally:
        model.train(was_training)
    return {f"{prefix}_val_{k}": v for k, v in m.items()}


class SWA(Regularizer):
    spec_class = SWASpec
    spec: SWASpec

    def __init__(self, spec: SWASpec, task: TaskInfo):
        super().__init__(spec, task)
        #: first epoch (from 1) whose weights enter the average
        self.start_epoch = min(task.epochs, math.floor(spec.start * task.epochs) + 1)
        self.batches: list[torch.Tensor] = []
        self.data: Any = None
        self.epoch = 0  # the epoch whose steps ran last (from 1)
        self.averaged_through = 0  # the last epoch whose end weights entered the average

    def bind_data(self, data: Any) -> None:
        self.data = data

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
        self.epoch = step.epoch + 1
        if self.spec.every == "step" and self._averaging(step.epoch + 1):
            self.averaged.update_parameters(step.model)

    def _average_epoch_end(self, epoch: int, model: nn.Module) -> None:
        """Average the end-of-epoch weights once; the metrics hook comes first and needs them."""
        if self.spec.every == "epoch" and self._averaging(epoch) and epoch > self.averaged_through:
            self.averaged.update_parameters(model)
            self.averaged_through = epoch

    def extra_metrics(self, model: nn.Module) -> dict[str, float]:
        self._average_epoch_end(self.epoch, model)
        n = int(self.averaged.n_averaged)
        out = {"swa_n_averaged": float(n)}
        if n and self.data is not None:
            averaged = self.averaged.module
            if self.bn and self.batches:
                with rng_untouched(self.task.device):
                    update_bn(self.batches, averaged)
            out.update(averaged_val_metrics(averaged, self.data, "swa"))
        return out

    def step_lr(self, epoch: int) -> bool:
        # torch's swa_utils recipe: while averaging, SWALR alone sets the rate; the run's
        # scheduler would otherwise step the same rate a second time each epoch
        if self.scheduler is None or not self._averaging(epoch):
            return False
        self.scheduler.step()
        return True

    def on_epoch_end(self, epoch: int, metrics: dict[str, float], model: nn.Module) -> None:
        if self._averaging(epoch):
            self._average_epoch_end(epoch, model)

    def finalize(self, model: nn.Module) -> nn.Module:
        if int(self.averaged.n_averaged) == 0:
            return model
        averaged = self.averaged.module
        if self.bn and self.batches:
            update_bn(self.batches, averaged)
        return averaged

    def state_dict(self) -> dict[str, Any]:
        return {
            "averaged": self.averaged.state_dict(),
            # SWALR's own state is plain numbers and strings: its anneal resumes mid-way
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "averaged_through": self.averaged_through,
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.averaged.load_state_dict(state["averaged"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.averaged_through = int(state.get("averaged_through", 0))
        self.epoch = int(state.get("epoch", 0))
