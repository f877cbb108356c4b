"""Early termination of poor configurations, as pure decisions over metric curves.

Both rules read the per-epoch values of the sweep's metric for every trial of the sweep
(``{trial: {epoch: value}}``) and return the running trials to stop, each with its reason. They
keep no state: whoever calls them (the reconciler's tick) can call them again at any time, and
stopping is carried out by the usual cancel request, so a stopped trial ends ``cancelled`` with
its last checkpoint and summary.

- Median stopping rule (Golovin et al., "Google Vizier", KDD 2017): at epoch t ≥ grace, stop a
  trial whose best value up to t is worse than the median of the other trials' running averages
  up to t (only trials that reached t count, and at least ``min_trials`` of them).
- ASHA (Li et al., "A System for Massively Parallel Hyperparameter Tuning", MLSys 2020), in the
  stopping form of Ray Tune's ASHAScheduler: rungs at ``min_epochs · rf^k`` epochs below the
  budget. A trial is judged at the highest rung it has reached, against the other trials' values
  at that rung: it continues while it is within the top ``1/rf`` of them, i.e. not worse than
  their ``(1 - 1/rf)`` quantile (``1/rf`` for a metric to minimize). With no other trial at the
  rung yet, it continues.
"""

from __future__ import annotations

import statistics
from collections.abc import Collection, Mapping

import numpy as np

Curves = Mapping[str, Mapping[int, float]]


def _worse(a: float, b: float, mode: str) -> bool:
    return a > b if mode == "min" else a < b


def median_stopping(
    curves: Curves,
    running: Collection[str],
    *,
    metric: str,
    mode: str,
    grace_epochs: int = 2,
    min_trials: int = 3,
) -> dict[str, str]:
    stop = {}
    for trial in running:
        curve = curves.get(trial) or {}
        if not curve:
            continue
        t = max(curve)
        if t < grace_epochs:
            continue
        mine = [v for s, v in curve.items() if s <= t]
        best = min(mine) if mode == "min" else max(mine)
        averages = []
        for other, c in curves.items():
            if other == trial or not c or max(c) < t:
                continue
            upto = [v for s, v in c.items() if s <= t]
            averages.append(sum(upto) / len(upto))
        if len(averages) < min_trials:
            continue
        median = statistics.median(averages)
        if _worse(best, median, mode):
            stop[trial] = (
                f"stopped by the median rule at epoch {t}: best {metric} {best:.4g} is worse "
                f"than the median {median:.4g} of {len(averages)} other trials"
            )
    return stop


def asha_rungs(min_epochs: int, reduction_factor: int, max_epochs: int) -> list[int]:
    """Epochs at which trials are judged: ``min_epochs · rf^k`` below the full budget."""
    rungs, r = [], min_epochs
    while r < max_epochs:
        rungs.append(r)
        r *= reduction_factor
    return rungs


def asha_cutoff(values: list[float], reduction_factor: int, mode: str) -> float:
    """The value a trial must match to be within the top 1/rf of ``values``."""
    q = (1 - 1 / reduction_factor) * 100 if mode == "max" else 100 / reduction_factor
    return float(np.percentile(values, q))


def asha(
    curves: Curves,
    running: Collection[str],
    *,
    metric: str,
    mode: str,
    max_epochs: int,
    min_epochs: int = 1,
    reduction_factor: int = 3,
) -> dict[str, str]:
    rungs = asha_rungs(min_epochs, reduction_factor, max_epochs)
    stop = {}
    for trial in running:
        curve = curves.get(trial) or {}
        reached = [r for r in rungs if r in curve]
        if not reached:
            continue
        rung = reached[-1]
        peers = [c[rung] for other, c in curves.items() if other != trial and rung in c]
        if not peers:
            continue
        cutoff = asha_cutoff(peers, reduction_factor, mode)
        value = curve[rung]
        if _worse(value, cutoff, mode):
            stop[trial] = (
                f"stopped by ASHA at epoch {rung}: {metric} {value:.4g} is outside the top "
                f"1/{reduction_factor} (cutoff {cutoff:.4g} over {len(peers)} other trials)"
            )
    return stop
