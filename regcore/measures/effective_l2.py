"""The L2 strength that early stopping acts like: λ ≈ 1/(2·Σ_t α_t), in ``l2.strength`` units.

For a quadratic loss, gradient descent from zero stopped after τ steps of rate α approximates
the ridge solution of the penalty (λ′/2)‖w‖² with λ′ ≈ 1/(τα) (Goodfellow et al. 2016, §7.8,
eq. 7.44; Prince §9.3.1): stopping earlier is a stronger penalty. ``l2.strength`` λ adds λ·Σw²
to the mean loss (README, Conventions), so λ = λ′/2 = 1/(2τα). With a rate that changes over
the run (step decay, cosine) the product τα becomes the sum of the rates of the steps taken,
Σ_t α_t: each step moves an eigendirection of curvature h by the factor (1 − α_t·h), and the
product of those factors is ≈ exp(−h·Σ_t α_t). The trainer keeps that sum (``lr_sum``).
"""

from __future__ import annotations

import math


def effective_l2(lr_sum: float) -> float:
    """1/(2·Σ_t α_t); ∞ before the first step."""
    return 1.0 / (2.0 * lr_sum) if lr_sum > 0 else math.inf
