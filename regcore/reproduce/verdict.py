"""A claim's statistic over seeds and its verdict: "holds" or "does not hold", with figures."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scipy import stats

from regcore.reproduce.claims import Statistic

Metrics = Mapping[str, float]


def _ens_formula(m: Metrics, spec: Mapping[str, Any]) -> float:
    k = int(spec.get("ensemble", {}).get("members", 1))
    return m["ens_v"] / k + (k - 1) * m["ens_c"] / k


#: values computed from a run's metrics and its spec, usable as a statistic's side
DERIVED: dict[str, Callable[[Metrics, Mapping[str, Any]], float]] = {"ens_formula": _ens_formula}


def value(metric: str, metrics: Metrics, spec: Mapping[str, Any]) -> float:
    if metric in DERIVED:
        return DERIVED[metric](metrics, spec)
    if metric not in metrics:
        raise KeyError(f"metric {metric!r} not in the run's metrics ({sorted(metrics)})")
    return float(metrics[metric])


@dataclass(frozen=True)
class Verdict:
    holds: bool
    per_seed: list[float]  # the statistic's value for each seed
    mean: float
    low: float  # 95% t-interval of the mean
    high: float
    criterion: str
    reason: str

    @property
    def word(self) -> str:
        return "holds" if self.holds else "does not hold"


def interval(xs: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided t-interval; with one value the interval is unbounded."""
    n = len(xs)
    mean = sum(xs) / n
    if n < 2:
        return mean, -math.inf, math.inf
    sd = stats.tstd(xs)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def decide(stat: Statistic, per_seed: Sequence[float]) -> Verdict:
    """The verdict on the per-seed values of ``stat`` (differences, or relative gaps)."""
    xs = [float(x) for x in per_seed]
    if not xs or any(math.isnan(x) for x in xs):
        return Verdict(False, xs, math.nan, math.nan, math.nan, "", "a run gave no value (NaN)")
    mean, low, high = interval(xs)
    if stat.kind == "greater":
        crit = (
            f"{stat.metric}[{stat.a}] − {stat.metric}[{stat.b}] > {stat.margin:g} "
            "(lower end of the 95% interval)"
        )
        ok = low > stat.margin
        why = f"mean {mean:.4g}, 95% interval [{low:.4g}, {high:.4g}]"
        if not ok and mean > stat.margin:
            why += ": right direction, but the interval reaches the margin (not robust)"
        elif not ok:
            why += ": the effect is not in the claimed direction"
        return Verdict(ok, xs, mean, low, high, crit, why)
    if stat.kind == "close":
        other = stat.b_metric or stat.metric
        crit = (
            f"|{stat.metric}[{stat.a}] − {other}[{stat.b}]| / |{other}[{stat.b}]| ≤ "
            f"{stat.tolerance:g} (upper end of the 95% interval)"
        )
        ok = high <= stat.tolerance
        why = f"mean relative gap {mean:.3g}, 95% interval [{low:.3g}, {high:.3g}]"
        if not ok:
            why += f": above the tolerance {stat.tolerance:g}"
        return Verdict(ok, xs, mean, low, high, crit, why)
    raise ValueError(f"statistic kind {stat.kind!r}: expected greater or close")


def per_seed_values(
    stat: Statistic,
    runs: Mapping[str, Sequence[Metrics]],
    specs: Mapping[str, Sequence[Mapping[str, Any]]],
) -> list[float]:
    """The statistic for each seed from ``runs[arm][seed]`` (final metrics) and their specs."""
    n = min(len(runs[stat.a]), len(runs[stat.b]))
    out = []
    for i in range(n):
        a = value(stat.metric, runs[stat.a][i], specs[stat.a][i])
        b = value(stat.b_metric or stat.metric, runs[stat.b][i], specs[stat.b][i])
        if stat.kind == "greater":
            out.append(a - b)
        else:
            out.append(abs(a - b) / abs(b) if b != 0 else (0.0 if a == b else math.inf))
    return out
