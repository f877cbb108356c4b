"""A sweep's results table: one row per configuration with the mean and 95% interval over its
seeds of each metric (from the experiments' summaries; only succeeded runs count), the best
configuration by the sweep's metric, and for a factorial sweep the effects of each factor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from service.sweeps import stats


def results(
    configs: Sequence[Mapping[str, Any]],
    runs: Sequence[tuple[int, Mapping[str, Any] | None]],
    *,
    metric: str,
    mode: str,
    keys: Sequence[str] | None = None,
    factors: Sequence[str] = (),
) -> dict[str, Any]:
    keys = list(keys) if keys else stats.metric_keys(s for _, s in runs)
    if metric not in keys:
        keys.append(metric)
    estimates = stats.aggregate(len(configs), runs, keys)
    table = []
    for i, (params, est) in enumerate(zip(configs, estimates, strict=True)):
        table.append(
            {
                "config": i,
                "params": dict(params),
                "n": sum(1 for c, _ in runs if c == i),
                "metrics": {k: (e.as_dict() if e else None) for k, e in est.items()},
            }
        )
    b = stats.best(estimates, metric, mode)
    out: dict[str, Any] = {
        "metric": metric,
        "mode": mode,
        "keys": keys,
        "table": table,
        "best": (
            {"config": b, "params": dict(configs[b]), **estimates[b][metric].as_dict()}  # type: ignore[union-attr]
            if b is not None
            else None
        ),
    }
    if factors:
        out["effects"] = {k: factorial_effects(configs, runs, factors, k) for k in keys}
    return out


def factorial_effects(
    configs: Sequence[Mapping[str, Any]],
    runs: Sequence[tuple[int, Mapping[str, Any] | None]],
    factors: Sequence[str],
    key: str,
) -> dict[str, Any] | None:
    cells: dict[tuple[bool, ...], list[float]] = {}
    for c, summary in runs:
        value = stats.summary_value(summary, key)
        if value is not None:
            cell = tuple(bool(configs[c][f]) for f in factors)
            cells.setdefault(cell, []).append(value)
    return stats.factorial_effects(factors, cells)
