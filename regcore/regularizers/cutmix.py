"""CutMix (Yun et al. 2019, "CutMix: regularization strategy to train strong classifiers with
localizable features").

A contiguous segment (1D inputs) or box (8×8 images) of a partner x_j, with j a random
permutation of the batch, is pasted into x_i; the targets are mixed by the area kept,
ỹ = λ·y_i + (1 − λ)·y_j, with λ = 1 − (pasted area)/(total area) measured after clipping the box
to the input. The cut fraction 1 − λ₀ is drawn per example from Beta(α, α); an example is mixed
with probability ``p``. Targets become distributions [B, K] (already-soft targets, e.g. from
label smoothing before it, are mixed as they are). Vectorized: the boxes are masks built from
index comparisons, with no loop over examples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from regcore.regularizer_specs import CutMixSpec
from regcore.regularizers.base import Regularizer, Step


def segment_mask(start: torch.Tensor, length: torch.Tensor, size: int) -> torch.Tensor:
    """[B, size] boolean, True on start_b ≤ t < start_b + length_b."""
    t = torch.arange(size, device=start.device)
    return (t >= start[:, None]) & (t < (start + length)[:, None])


def random_segments(cut: torch.Tensor, size: int, gen_u: torch.Tensor) -> torch.Tensor:
    """Segments of length round(cut·size) at a uniformly random centre, clipped to [0, size)."""
    length = (cut * size).round()
    centre = (gen_u * size).floor()
    start = (centre - length / 2).floor().clamp(min=0)
    end = (centre + length / 2).floor().clamp(max=size)
    return segment_mask(start.long(), (end - start).clamp(min=0).long(), size)


def cutmix(
    x: torch.Tensor, y: torch.Tensor, perm: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """x with x[perm] pasted where ``mask`` (x's shape without the batch dim flattened) is True;
    targets (distributions [B, K]) mixed by the kept fraction λ = 1 − mean(mask)."""
    m = mask.reshape(x.shape[0], -1).to(x.dtype)
    mixed = torch.where(mask.reshape(x.shape[0], -1) > 0, x[perm], x)
    lam = 1.0 - m.mean(dim=1, keepdim=True)
    return mixed, lam * y + (1 - lam) * y[perm]


class CutMix(Regularizer):
    spec_class = CutMixSpec
    spec: CutMixSpec

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor, step: Step
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, dev = x.shape[0], x.device
        target = y if y.is_floating_point() else F.one_hot(y, self.task.num_classes).to(x.dtype)
        alpha = torch.tensor(self.spec.alpha, device=dev)
        # no argument validation: it syncs with the host every step; the spec bounds α > 0
        cut = torch.distributions.Beta(alpha, alpha, validate_args=False).sample((b,))
        cut = cut * torch.rand(b, device=dev).lt(self.spec.p)
        perm = torch.randperm(b, device=dev)
        shape = self.task.image_shape
        if shape is None:
            mask = random_segments(cut, x.shape[1], torch.rand(b, device=dev))
        else:
            # a box of side √cut·H × √cut·W, so its area fraction is cut before clipping
            side = cut.sqrt()
            rows = random_segments(side, shape[0], torch.rand(b, device=dev))
            cols = random_segments(side, shape[1], torch.rand(b, device=dev))
            mask = rows[:, :, None] & cols[:, None, :]
        return cutmix(x, target, perm, mask)
