"""Cutout: zero one random contiguous segment of each input.

DeVries & Taylor (2017), "Improved regularization of convolutional neural networks with
cutout", in its 1D form: a segment of ``size`` features, placed uniformly so that it lies
wholly inside the signal. Zero is the feature mean, since inputs are standardized. Each example
is cut with probability ``p``; training only. (The 2D square for 8×8 images is a later addition.)
"""

from __future__ import annotations

import torch

from regcore.regularizer_specs import CutoutSpec
from regcore.regularizers.base import Regularizer, Step, TaskInfo


def cutout_1d(x: torch.Tensor, starts: torch.Tensor, size: int) -> torch.Tensor:
    """Zero ``x[i, starts[i] : starts[i] + size]`` for each row i (x is [B, L])."""
    pos = torch.arange(x.shape[1], device=x.device)
    start = starts[:, None]
    inside = (pos >= start) & (pos < start + size)
    return x.masked_fill(inside, 0.0)


def random_cutout_1d(
    x: torch.Tensor, size: int, p: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Cut one uniformly placed segment of ``size`` from each row, each row with probability p."""
    b, length = x.shape
    size = min(size, length)
    starts = torch.randint(0, length - size + 1, (b,), device=x.device, generator=generator)
    if p < 1.0:
        # a row left whole gets an empty segment, which keeps the pass branch-free
        keep = torch.rand(b, device=x.device, generator=generator) >= p
        starts = starts.masked_fill(keep, length)
    return cutout_1d(x, starts, size)


class Cutout(Regularizer):
    spec_class = CutoutSpec
    spec: CutoutSpec

    def __init__(self, spec: CutoutSpec, task: TaskInfo):
        super().__init__(spec, task)
        if task.image_shape is not None:
            raise NotImplementedError(
                "cutout on images (a square patch) is not implemented yet; only 1D inputs"
            )

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor, step: Step
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return random_cutout_1d(x, self.spec.size, self.spec.p), y
