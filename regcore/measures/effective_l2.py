"""The L2 strength that early stopping after τ steps of rate α acts like: λ ≈ 1/(τα).

For a quadratic loss, τ steps of gradient descent from zero approximate the ridge solution with
this strength (Goodfellow et al. 2016, §7.8; Prince §9.3.1): stopping earlier is a stronger
penalty.
"""

from __future__ import annotations

import math


def effective_l2(steps: int, lr: float) -> float:
    return 1.0 / (steps * lr) if steps > 0 and lr > 0 else math.inf
