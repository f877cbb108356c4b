"""Consistency regularization: the network's predictions on two random augmented views of the
same input should agree, a term that needs no label and so also reads unlabelled examples.

* ``pi`` — the Π-model (Laine & Aila 2017, "Temporal ensembling for semi-supervised learning"):
  two stochastic passes of the network being trained, views v and v′ of each input;
* ``mean_teacher`` (Tarvainen & Valpola 2017, "Mean teachers are better role models"): the
  second pass is a teacher whose weights are an exponential moving average of the student's,
  θ′ ← α θ′ + (1 − α) θ after every step (``torch.optim.swa_utils.AveragedModel``); no gradient
  flows into the teacher.

    penalty = w(t) · mean_rows Σₖ (pₖ(v) − p̃ₖ(v′))²

p the softmax for classification (the raw output for regression), over the labelled batch and
the unlabelled one (``data.n_unlabeled``) when there is one. Laine & Aila average the squared
error over the K classes and take w_max = 100; summing over them, w = 10 is the same for
K = 10. w(t) ramps up over the first ``ramp_up`` of training (``ramp.py``). The views come from
the augment transforms (``views``: by default shift, scale and noise for 1D signals). Extra
passes update batch-norm statistics, as they would with the unlabelled data in the batch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from regcore.regularizer_specs import ConsistencySpec
from regcore.regularizers.augment import augment_view
from regcore.regularizers.base import Regularizer, Step, TaskInfo
from regcore.regularizers.ramp import RampedWeight


def consistency_loss(out: torch.Tensor, target: torch.Tensor, classification: bool) -> torch.Tensor:
    """mean over rows of Σₖ (pₖ − p̃ₖ)², p the softmax of each output when classifying."""
    if classification:
        out, target = out.softmax(-1), target.softmax(-1)
    return (out - target).pow(2).sum(-1).mean()


class Consistency(Regularizer):
    spec_class = ConsistencySpec
    spec: ConsistencySpec
    reads_unlabeled = True

    def __init__(self, spec: ConsistencySpec, task: TaskInfo):
        super().__init__(spec, task)
        self.weight = RampedWeight(spec.weight, spec.ramp_up, task)
        self.classification = task.task == "classification"
        self.teacher: AveragedModel | None = None

    def setup(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if self.spec.mode == "mean_teacher" and self.teacher is None:
            self.teacher = AveragedModel(
                model, multi_avg_fn=get_ema_multi_avg_fn(self.spec.decay), use_buffers=True
            )

    def penalty(self, step: Step) -> torch.Tensor:
        x = step.x if step.unlabeled is None else torch.cat([step.x, step.unlabeled])
        views = self.spec.views
        out = step.model(augment_view(x, views, self.task.image_shape))
        other = augment_view(x, views, self.task.image_shape)
        if self.teacher is None:
            target = step.model(other)
        else:
            with torch.no_grad():
                target = self.teacher(other)
        return self.weight.at(step.index) * consistency_loss(out, target, self.classification)

    def after_optimizer_step(self, step: Step) -> None:
        if self.teacher is not None:
            self.teacher.update_parameters(step.model)

    # the teacher is part of the run's state: a resumed run goes on averaging the same weights
    # (n_averaged is in it: the first update after a resume must not copy the weights again)
    def state_dict(self) -> dict[str, Any]:
        return {} if self.teacher is None else {"teacher": self.teacher.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.teacher is not None and state:
            self.teacher.load_state_dict(state["teacher"])
