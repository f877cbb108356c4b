"""DisturbLabel: replace each training label by a uniformly random class with probability α.

Xie et al. (2016), "DisturbLabel: Regularizing CNN on the loss layer". A fresh draw every step,
so it is noise on the loss layer rather than a fixed corruption of the dataset (compare the
data spec's ``label_noise``). The random class may equal the true one, so a label actually
changes with probability α(K−1)/K; the fraction seen in each epoch is recorded as
``disturb_label_changed``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from regcore.regularizer_specs import DisturbLabelSpec
from regcore.regularizers.base import Regularizer, Step, TaskInfo


def disturb_labels(
    y: torch.Tensor,
    num_classes: int,
    alpha: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Each class index replaced, with probability α, by one drawn uniformly from all K classes.

    Rows of a target distribution (float ``y`` of shape [B, K]) are replaced by the one-hot of
    the drawn class.
    """
    rows = y.shape[:1]
    replace = torch.rand(rows, device=y.device, generator=generator) < alpha
    drawn = torch.randint(0, num_classes, rows, device=y.device, generator=generator)
    if y.is_floating_point():
        return torch.where(replace[:, None], F.one_hot(drawn, num_classes).to(y.dtype), y)
    return torch.where(replace, drawn, y)


class DisturbLabel(Regularizer):
    spec_class = DisturbLabelSpec
    spec: DisturbLabelSpec

    def __init__(self, spec: DisturbLabelSpec, task: TaskInfo):
        super().__init__(spec, task)
        if task.task != "classification" or task.num_classes < 2:
            raise ValueError("disturb_label needs a classification dataset with at least 2 classes")
        # device counters: no host sync per step, read once per epoch
        self.changed = torch.zeros((), dtype=torch.long, device=task.device)
        self.seen = torch.zeros((), dtype=torch.long, device=task.device)

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor, step: Step
    ) -> tuple[torch.Tensor, torch.Tensor]:
        new = disturb_labels(y, self.task.num_classes, self.spec.alpha)
        differs = new != y
        self.changed += (differs.any(1) if differs.dim() > 1 else differs).sum()
        self.seen += y.shape[0]
        return x, new

    def extra_metrics(self, model: nn.Module) -> dict[str, float]:
        seen = int(self.seen)
        return {"disturb_label_changed": int(self.changed) / seen} if seen else {}

    def on_epoch_end(self, epoch: int, metrics: dict[str, float], model: nn.Module) -> None:
        self.changed.zero_()
        self.seen.zero_()
