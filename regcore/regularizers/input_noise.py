"""Input noise: train on x + r, r ~ N(0, σ²) (additive) or x·r, r ~ N(1, σ²) (multiplicative).

Antczak eq. 16-17; Bishop (1995), "Training with noise is equivalent to Tikhonov
regularization": on least squares with the *mean* loss, additive noise of variance σ² equals
ridge with λ = σ² in expectation (λ = n·σ² with the summed loss), and multiplicative noise equals
ridge with a per-feature strength σ²·mean(x_j²). Fresh noise every step, training only.
"""

from __future__ import annotations

import torch

from regcore.regularizer_specs import InputNoiseSpec
from regcore.regularizers.base import Regularizer, Step


def input_noise(
    x: torch.Tensor,
    sigma: float,
    mode: str = "additive",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``x + σ·z`` (additive) or ``x·(1 + σ·z)`` (multiplicative) with z ~ N(0, 1) per entry."""
    if sigma == 0:
        return x
    z = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    if mode == "additive":
        return x + sigma * z
    if mode == "multiplicative":
        return x * (1.0 + sigma * z)
    raise ValueError(f"unknown input noise mode {mode!r}; expected 'additive' or 'multiplicative'")


class InputNoise(Regularizer):
    spec_class = InputNoiseSpec
    spec: InputNoiseSpec

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor, step: Step
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return input_noise(x, self.spec.sigma, self.spec.mode), y
