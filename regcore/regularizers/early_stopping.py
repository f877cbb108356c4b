"""Early stopping: stop when the monitored metric stops improving and restore the best weights.

TU Graz slides (first recipe); Prince §9.3.1. For a quadratic loss it acts like L2 with an
effective strength ≈ 1/(τα) after τ steps of rate α in ½λ‖w‖² units (Goodfellow et al. 2016,
§7.8), i.e. ``l2.strength`` ≈ 1/(2·Σ_t α_t) (the ``effective_l2`` measurement).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from regcore.regularizer_specs import EarlyStoppingSpec
from regcore.regularizers.base import Regularizer


def improved(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta`` in direction ``mode``."""
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def resolve_mode(monitor: str, mode: str) -> str:
    if mode != "auto":
        return mode
    return "max" if monitor.endswith("_acc") else "min"


class EarlyStopping(Regularizer):
    spec_class = EarlyStoppingSpec
    spec: EarlyStoppingSpec

    def __init__(self, spec: EarlyStoppingSpec, task: Any):
        super().__init__(spec, task)
        self.mode = resolve_mode(spec.monitor, spec.mode)
        self.best: float | None = None
        self.best_at: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_epochs = 0

    def on_epoch_end(self, epoch: int, metrics: dict[str, float], model: nn.Module) -> None:
        if self.spec.monitor not in metrics:
            raise KeyError(
                f"early_stopping monitors {self.spec.monitor!r}, which this run does not record; "
                f"available: {', '.join(sorted(metrics))}"
            )
        value = metrics[self.spec.monitor]
        if improved(value, self.best, self.mode, self.spec.min_delta):
            self.best, self.best_at, self.bad_epochs = value, epoch, 0
            if self.spec.restore_best:
                self.best_state = copy.deepcopy(model.state_dict())
        else:
            self.bad_epochs += 1

    def should_stop(self) -> bool:
        return self.bad_epochs >= self.spec.patience

    def finalize(self, model: nn.Module) -> nn.Module:
        if self.spec.restore_best and self.best_state is not None:
            model.load_state_dict(self.best_state)
        return model

    def best_epoch(self) -> int | None:
        return self.best_at

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_at": self.best_at,
            "bad_epochs": self.bad_epochs,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_at = state["best"], state["best_at"]
        self.bad_epochs, self.best_state = state["bad_epochs"], state["best_state"]
