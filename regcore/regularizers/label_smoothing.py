"""Label smoothing: train on a softened target distribution instead of a one-hot vector.

Szegedy et al. (2016), "Rethinking the Inception architecture", §7; Müller et al. (2019), "When
does label smoothing help?". Two conventions (catalog): ``epsilon`` gives (1−ε)·onehot + ε/K, as
torch's ``cross_entropy(label_smoothing=ε)``; ``rho`` puts 1−ρ on the true class and ρ/(K−1) on
each other one (TU Graz slides, Prince problem 9.4). They agree for ε = ρK/(K−1).

Targets that are already distributions (after ``mixup`` or ``cutmix``) are smoothed as they are,
p ↦ (1−ε)·p + ε/K, so mixup may come before or after label smoothing in the spec: both orders
give the same targets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from regcore.regularizer_specs import LabelSmoothingSpec
from regcore.regularizers.base import Regularizer, Step, TaskInfo


def rho_to_epsilon(rho: float, num_classes: int) -> float:
    """ε of the uniform-over-K convention that gives the same targets as ρ."""
    return rho * num_classes / (num_classes - 1)


def as_distribution(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class indices → one-hot float rows; float rows (already distributions) pass through."""
    if y.is_floating_point():
        return y
    return F.one_hot(y, num_classes).to(torch.get_default_dtype())


def smooth_labels(y: torch.Tensor, num_classes: int, epsilon: float) -> torch.Tensor:
    """(1−ε)·p + ε/K, where p is the one-hot of ``y`` (indices) or ``y`` itself (distributions)."""
    return as_distribution(y, num_classes) * (1.0 - epsilon) + epsilon / num_classes


class LabelSmoothing(Regularizer):
    spec_class = LabelSmoothingSpec
    spec: LabelSmoothingSpec

    def __init__(self, spec: LabelSmoothingSpec, task: TaskInfo):
        super().__init__(spec, task)
        if task.task != "classification" or task.num_classes < 2:
            raise ValueError(
                "label_smoothing needs a classification dataset with at least 2 classes"
            )
        if spec.rho is not None:
            self.epsilon = rho_to_epsilon(spec.rho, task.num_classes)
        else:
            assert spec.epsilon is not None  # the spec fills in 0.1 when neither is given
            self.epsilon = spec.epsilon

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor, step: Step
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return x, smooth_labels(y, self.task.num_classes, self.epsilon)
