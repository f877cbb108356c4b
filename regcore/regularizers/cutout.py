"""Cutout: zero one random contiguous segment (1D) or square (images) of each input.

DeVries & Taylor (2017), "Improved regularization of convolutional neural networks with
cutout". 1D signals: a segment of ``size`` features, placed uniformly so that it lies wholly
inside the signal. Images (digits, 8×8): the paper's square of side ``size`` whose centre is a
uniformly drawn pixel, clipped at the border (the paper found patches that may fall partly
outside the image work better); on 8×8 images a side of 3-4 is sensible, the default 8 blanks
between a quarter and all of the image. Zero is the feature mean, since inputs are
standardized. Each example is cut with probability ``p``; training only.
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


def cutout_2d(
    x: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor, size: int, shape: tuple[int, int]
) -> torch.Tensor:
    """Zero rows ``tops[i] : tops[i] + size`` × columns ``lefts[i] : lefts[i] + size`` (clipped
    to the image) of each flat image ``x[i]`` of ``shape`` (x is [B, H·W])."""
    h, w = shape
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    in_rows = (rows >= tops[:, None]) & (rows < tops[:, None] + size)
    in_cols = (cols >= lefts[:, None]) & (cols < lefts[:, None] + size)
    inside = (in_rows[:, :, None] & in_cols[:, None, :]).reshape(x.shape[0], h * w)
    return x.masked_fill(inside, 0.0)


def random_cutout_2d(
    x: torch.Tensor,
    size: int,
    shape: tuple[int, int],
    p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Cut one square of side ``size`` centred on a uniform pixel, each image with probability p."""
    b = x.shape[0]
    h, w = shape
    tops = torch.randint(0, h, (b,), device=x.device, generator=generator) - size // 2
    lefts = torch.randint(0, w, (b,), device=x.device, generator=generator) - size // 2
    if p < 1.0:
        # an image left whole gets a square below the bottom edge, which keeps the pass branch-free
        keep = torch.rand(b, device=x.device, generator=generator) >= p
        tops = tops.masked_fill(keep, h)
    return cutout_2d(x, tops, lefts, size, shape)


class Cutout(Regularizer):
    spec_class = CutoutSpec
    spec: CutoutSpec

    def __init__(self, spec: CutoutSpec, task: TaskInfo):
        super().__init__(spec, task)
        self.image_shape = task.image_shape

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor, step: Step
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.image_shape is not None:
            return random_cutout_2d(x, self.spec.size, self.image_shape, self.spec.p), y
        return random_cutout_1d(x, self.spec.size, self.spec.p), y
