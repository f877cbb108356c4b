"""Pseudo-labels (Lee 2013, "Pseudo-Label: the simple and efficient semi-supervised learning
method for deep neural networks"): each unlabelled example (``data.n_unlabeled``) takes the class
the network itself predicts as its label, and the loss adds α(t) times the cross-entropy to it.

    L = CE(f(x), y) + α(t) · mean_u 1[max p(u) ≥ τ] · CE(f(u), argmax p(u))

As in FixMatch (Sohn et al. 2020) only predictions of confidence at least ``threshold`` τ count
(τ = 0 is Lee's rule: every example); the mean runs over the whole unlabelled batch, so few
confident rows give a small term. With ``views`` the pseudo-label is read from the plain input and
fitted on an augmented view of it, as FixMatch pairs a weak and a strong augmentation; without,
it is taken from the same training-mode forward it is fitted with. No gradient flows through the
argmax. α(t) ramps up over the first ``ramp_up`` of training (``ramp.py``). Lee's reading:
entropy minimization, it moves the decision boundary into low-density regions between the
classes' clusters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from regcore.regularizer_specs import PseudoLabelSpec
from regcore.regularizers.augment import augment_view
from regcore.regularizers.base import Regularizer, Step, TaskInfo
from regcore.regularizers.ramp import RampedWeight


def pseudo_label_loss(
    logits: torch.Tensor, labels_from: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over the rows of 1[conf ≥ τ]·CE(logits, argmax), the pseudo-label and its
    confidence read from ``labels_from`` (the same logits, or another view's); and the mask of
    the rows kept."""
    conf, labels = labels_from.detach().softmax(-1).max(-1)
    keep = conf >= threshold
    ce = F.cross_entropy(logits, labels, reduction="none")
    return (ce * keep).mean(), keep


class PseudoLabel(Regularizer):
    spec_class = PseudoLabelSpec
    spec: PseudoLabelSpec
    reads_unlabeled = True

    def __init__(self, spec: PseudoLabelSpec, task: TaskInfo):
        super().__init__(spec, task)
        self.weight = RampedWeight(spec.weight, spec.ramp_up, task)
        self.kept = torch.zeros((), device=task.device)
        self.seen = 0

    def penalty(self, step: Step) -> torch.Tensor | None:
        if step.unlabeled is None:  # no unlabelled pool (validation asks for one)
            return None
        u, views = step.unlabeled, self.spec.views
        if views is None:
            logits = labels_from = step.model(u)
        else:  # FixMatch: the label from the plain input, the fit on an augmented view
            with torch.no_grad():
                labels_from = step.model(u)
            logits = step.model(augment_view(u, views, self.task.image_shape))
        loss, keep = pseudo_label_loss(logits, labels_from, self.spec.threshold)
        self.kept = self.kept + keep.sum()
        self.seen += len(keep)
        return self.weight.at(step.index) * loss

    def extra_metrics(self, model: nn.Module) -> dict[str, float]:
        """``pseudo_label_kept``: this epoch's fraction of unlabelled rows confident enough."""
        kept = float(self.kept) / self.seen if self.seen else 0.0
        self.kept, self.seen = torch.zeros((), device=self.task.device), 0
        return {"pseudo_label_kept": kept}
