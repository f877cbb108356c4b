"""mixup: train on convex combinations of pairs of examples and of their targets.

Zhang et al. (2018), "mixup: Beyond empirical risk minimization". One λ ~ Beta(α, α) per batch
and a random pairing j = π(i) within the batch: x̃ = λxᵢ + (1−λ)xⱼ, ỹ = λyᵢ + (1−λ)yⱼ with class
indices turned into one-hot rows first, so the targets become distributions (rows ≥ 0 summing
to 1) that the cross-entropy accepts. Regression targets are mixed as they are.

Order: put mixup before label_smoothing by convention (catalog); label_smoothing accepts the
mixed distributions, and the two orders give the same targets since both maps are affine.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from regcore.regularizer_specs import MixupSpec
from regcore.regularizers.base import Regularizer, Step


def mixup(
    x: torch.Tensor,
    y: torch.Tensor,
    lam: float | torch.Tensor,
    perm: torch.Tensor,
    num_classes: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(λx + (1−λ)x[perm], λy + (1−λ)y[perm]); integer y becomes one-hot over ``num_classes``."""
    if not y.is_floating_point():
        if num_classes is None:
            raise ValueError("mixup of class indices needs num_classes")
        y = F.one_hot(y, num_classes).to(x.dtype)
    return lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm]


def sample_lambda(alpha: float, device: torch.device) -> torch.Tensor:
    """λ ~ Beta(α, α) as a 0-d tensor on ``device``; argument validation is off, since it
    checks the tensor parameters on the host (a sync per step), and α > 0 is the spec's."""
    a = torch.tensor(float(alpha), device=device)
    return torch.distributions.Beta(a, a, validate_args=False).sample()


class Mixup(Regularizer):
    spec_class = MixupSpec
    spec: MixupSpec

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor, step: Step
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lam = sample_lambda(self.spec.alpha, x.device).to(x.dtype)
        perm = torch.randperm(x.shape[0], device=x.device)
        k = self.task.num_classes if self.task.task == "classification" else None
        return mixup(x, y, lam, perm, k)
