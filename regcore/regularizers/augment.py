"""Data augmentation: random label-preserving transforms of each training example, every step.

Simard et al. (2003); Goodfellow et al. (2016) §7.4; Prince §9.3.8; Antczak §3 (data
augmentation). For 1D signals such as MNIST-1D: a circular ``shift`` by up to ``max_shift``
samples, an amplitude ``scale`` drawn from ``scale_range`` and additive Gaussian ``noise``.
Each transform is a pure function that takes its per-example parameters; ``augment_1d`` draws
them and applies the listed transforms in order to each example with probability ``p``.

Inputs are standardized, so nothing is clamped to [0, 1]. For image data (``TaskInfo.image_shape``
set, e.g. 8×8 digits) the transforms are those of ``augment_image.py`` (translate, rotate, flip,
blur, brightness; scale and noise pixel-wise).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from regcore.regularizer_specs import AugmentSpec
from regcore.regularizers.augment_image import augment_image
from regcore.regularizers.base import Regularizer, Step, TaskInfo


def shift_1d(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Row i rolled right by ``shifts[i]`` samples (circular), as ``torch.roll`` per row."""
    length = x.shape[1]
    src = (torch.arange(length, device=x.device) - shifts[:, None]) % length
    return x.gather(1, src)


def scale_1d(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Row i multiplied by ``factors[i]``."""
    return x * factors[:, None]


def noise_1d(x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return x + noise


Draw = Callable[[torch.Tensor, AugmentSpec, torch.Generator | None], torch.Tensor]


def _random_shift(x: torch.Tensor, spec: AugmentSpec, gen: torch.Generator | None) -> torch.Tensor:
    m = spec.max_shift
    shifts = torch.randint(-m, m + 1, x.shape[:1], device=x.device, generator=gen)
    return shift_1d(x, shifts)


def _random_scale(x: torch.Tensor, spec: AugmentSpec, gen: torch.Generator | None) -> torch.Tensor:
    lo, hi = spec.scale_range
    u = torch.rand(x.shape[:1], dtype=x.dtype, device=x.device, generator=gen)
    return scale_1d(x, lo + (hi - lo) * u)


def _random_noise(x: torch.Tensor, spec: AugmentSpec, gen: torch.Generator | None) -> torch.Tensor:
    z = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=gen)
    return noise_1d(x, spec.noise_sigma * z)


TRANSFORMS_1D: dict[str, Draw] = {
    "shift": _random_shift,
    "scale": _random_scale,
    "noise": _random_noise,
}


def augment_1d(
    x: torch.Tensor,
    spec: AugmentSpec,
    generator: torch.Generator | None = None,
    transforms: Sequence[str] | None = None,
) -> torch.Tensor:
    """Apply ``spec.transforms`` in order to each row of x; each row is augmented with prob. p."""
    out = x
    for name in spec.transforms if transforms is None else transforms:
        out = TRANSFORMS_1D[name](out, spec, generator)
    if spec.p < 1.0:
        chosen = torch.rand(x.shape[:1], device=x.device, generator=generator) < spec.p
        out = torch.where(chosen[:, None], out, x)
    return out


def augment_view(
    x: torch.Tensor,
    spec: AugmentSpec,
    image_shape: tuple[int, int] | None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One random augmented view of the batch: image transforms for image data, else 1D ones
    (augment's batch, consistency's and contrastive pretraining's two views)."""
    if image_shape is not None:
        return augment_image(x, spec, image_shape, generator)
    return augment_1d(x, spec, generator)


class Augment(Regularizer):
    spec_class = AugmentSpec
    spec: AugmentSpec

    def __init__(self, spec: AugmentSpec, task: TaskInfo):
        super().__init__(spec, task)
        wrong = [t for t in spec.transforms if t not in (IMAGE if task.image_shape else SIGNAL)]
        if wrong:
            kind = "image" if task.image_shape else "1D"
            raise ValueError(f"augment transforms {wrong} do not apply to {kind} data")

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor, step: Step
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return augment_view(x, self.spec, self.task.image_shape), y


SIGNAL = ("shift", "scale", "noise")
IMAGE = ("translate", "rotate", "flip", "blur", "brightness", "scale", "noise")
