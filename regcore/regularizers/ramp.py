"""The ramp-up of an unsupervised loss's weight (Laine & Aila 2017, §3 and appendix A):
w(t) = w · exp(−5(1 − t)²), t the fraction of the ramp-up done, 1 from its end on. Early in
training the network's own predictions are noise; the ramp keeps them from setting the targets.
``pseudo_label`` (Lee 2013 ramps linearly between two epochs; one shape serves both here) and
``consistency`` use it.
"""

from __future__ import annotations

import math

from regcore.regularizers.base import TaskInfo


def ramp_weight(step: int, ramp_steps: float) -> float:
    """exp(−5(1 − t)²) with t = step / ramp_steps clipped to [0, 1]; 1 when ramp_steps is 0."""
    if ramp_steps <= 0:
        return 1.0
    t = min(1.0, step / ramp_steps)
    return math.exp(-5.0 * (1.0 - t) ** 2)


class RampedWeight:
    """``weight`` · ramp_weight over the first ``fraction`` of the run's optimizer steps."""

    def __init__(self, weight: float, fraction: float, task: TaskInfo):
        self.weight = weight
        self.steps = fraction * task.epochs * task.steps_per_epoch

    def at(self, step: int) -> float:
        return self.weight * ramp_weight(step, self.steps)
