"""Exponential moving average of the weights (Polyak averaging with forgetting).

After every optimizer step w̄ ← d·w̄ + (1 − d)·w with ``decay`` d. The average filters the
step-to-step noise of SGD, so the averaged model's validation curve is smoother than the raw
weights'. Buffers (batch-norm statistics) are averaged along with the weights, so no
``update_bn`` pass is needed. ``finalize`` returns the averaged model's module.

Each epoch the averaged model's validation loss (and accuracy) is recorded as ``ema_val_loss``
(``ema_val_acc``), in eval mode; training, and so the raw model's metrics, are unchanged.

With early stopping: the spec refuses ``early_stopping`` with ``restore_best`` beside ema (or
swa), since restoring the best raw weights and returning the average are two answers to "which
model is kept". Set ``restore_best: false`` to stop early and keep the average; the summary's
``best_epoch`` still names the raw model's best epoch.

Uses ``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from regcore.regularizer_specs import EMASpec
from regcore.regularizers.base import Regularizer, Step, TaskInfo
from regcore.regularizers.swa import averaged_val_metrics


def ema_update(avg: torch.Tensor, value: torch.Tensor, decay: float) -> torch.Tensor:
    """d·w̄ + (1 − d)·w."""
    return decay * avg + (1 - decay) * value


class EMA(Regularizer):
    spec_class = EMASpec
    spec: EMASpec

    def __init__(self, spec: EMASpec, task: TaskInfo):
        super().__init__(spec, task)
        self.data: Any = None

    def bind_data(self, data: Any) -> None:
        self.data = data

    def setup(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.averaged = AveragedModel(
            model, multi_avg_fn=get_ema_multi_avg_fn(self.spec.decay), use_buffers=True
        )

    def after_optimizer_step(self, step: Step) -> None:
        self.averaged.update_parameters(step.model)

    def extra_metrics(self, model: nn.Module) -> dict[str, float]:
        if self.data is None:
            return {}
        return averaged_val_metrics(self.averaged.module, self.data, "ema")

    def finalize(self, model: nn.Module) -> nn.Module:
        return self.averaged.module

    def state_dict(self) -> dict[str, Any]:
        # n_averaged is in it: the first update after a resume must not copy the weights again
        return {"averaged": self.averaged.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.averaged.load_state_dict(state["averaged"])
