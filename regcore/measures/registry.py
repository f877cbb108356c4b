"""Which function computes which measurement, and the object the training loop calls."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from regcore.measures.activation_sparsity import activation_sparsity
from regcore.measures.attack_accuracy import entry_accuracy
from regcore.measures.batch_grad_variance import batch_grad_variance
from regcore.measures.effective_l2 import effective_l2
from regcore.measures.grad_norm import grad_norm
from regcore.measures.lipschitz_bound import lipschitz_bound
from regcore.measures.sharpness import sharpness
from regcore.spec import AttackMeasureSpec, measure_key, measure_name

#: name → f(context) where the context holds model, data, steps, lr, lr_sum, batch_size and the
#: spec's ``entry`` (a name, or an attack's parameters).
MEASURES: dict[str, Callable[[dict[str, Any]], float | None]] = {
    "lipschitz_bound": lambda c: lipschitz_bound(c["model"]),
    "grad_norm": lambda c: grad_norm(c["model"], c["data"].train, c["data"].task),
    "batch_grad_variance": lambda c: batch_grad_variance(
        c["model"], c["data"].train, c["data"].task, c["batch_size"]
    ),
    "sharpness": lambda c: sharpness(c["model"], c["data"].train, c["data"].task),
    "activation_sparsity": lambda c: activation_sparsity(c["model"], c["data"].test),
    # mean max-softmax is part of every epoch's metrics already (training/metrics.py)
    "confidence": lambda c: None,
    "effective_l2": lambda c: effective_l2(c["lr_sum"]),
    "fgsm_acc": lambda c: entry_accuracy(c["model"], c["data"], c["entry"]),
    "pgd_acc": lambda c: entry_accuracy(c["model"], c["data"], c["entry"]),
}

#: measurements of the whole run rather than of the model: also in summary.json's metrics
RUN_MEASURES = ("effective_l2",)


class Measures:
    """Runs the chosen measurements without touching training.

    ``compute(trainer)`` reads the trainer's model, data, step count, learning rate, running sum
    of learning rates (``lr_sum``, one term per optimizer step) and batch size, and adds the
    time it took to ``trainer.timings["measure_s"]``.
    """

    def __init__(self, entries: Sequence[str | AttackMeasureSpec]):
        unknown = [measure_name(e) for e in entries if measure_name(e) not in MEASURES]
        if unknown:
            raise ValueError(f"unknown measurements {unknown}; known: {sorted(MEASURES)}")
        #: metric key → entry (the spec refuses two different entries under one key)
        self.entries = {measure_key(e): e for e in entries}
        self.names = list(self.entries)

    def compute(self, trainer: Any) -> dict[str, float]:
        if not self.names:
            return {}
        t0 = time.perf_counter()
        model = trainer.model
        context = {
            "model": model,
            "data": trainer.data,
            "steps": trainer.step_index,
            "lr": float(trainer.optimizer.param_groups[0]["lr"]),
            "lr_sum": float(getattr(trainer, "lr_sum", 0.0)),
            "batch_size": trainer.spec.train.batch_size,
        }
        devices = [trainer.device] if trainer.device.type == "cuda" else []
        was_training = model.training
        out: dict[str, float] = {}
        with torch.random.fork_rng(devices=devices):
            model.eval()
            try:
                for key, entry in self.entries.items():
                    value = MEASURES[measure_name(entry)]({**context, "entry": entry})
                    if value is not None:
                        out[key] = value
            finally:
                model.train(was_training)
        trainer.timings["measure_s"] = (
            trainer.timings.get("measure_s", 0.0) + time.perf_counter() - t0
        )
        return out

    def summary(self, trainer: Any) -> dict[str, float]:
        """The chosen ``RUN_MEASURES`` at the end of training, for summary.json's metrics."""
        context = {"lr_sum": float(getattr(trainer, "lr_sum", 0.0))}
        out: dict[str, float] = {}
        for name in (n for n in self.names if n in RUN_MEASURES):
            value = MEASURES[name](context)
            if value is not None and math.isfinite(value):  # JSON has no Infinity
                out[name] = value
        return out
