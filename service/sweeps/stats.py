"""Results over seeds: mean and 95% confidence interval per configuration, the best
configuration, and a 2^k factorial design's main effects and two-way interactions.

Intervals use Student's t (``scipy.stats.t``), since a sweep has few seeds: the interval of a
mean of n values is ``mean ± t_{0.975, n-1} · s / √n``. With one value there is no interval.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scipy import stats as _st

LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    mean: float
    low: float | None
    high: float | None
    n: int

    def as_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "ci_low": self.low, "ci_high": self.high, "n": self.n}


def t_quantile(df: int, level: float = LEVEL) -> float:
    return float(_st.t.ppf(0.5 + level / 2, df))


def mean_ci(values: Sequence[float], level: float = LEVEL) -> Estimate | None:
    """Mean and t interval of finite values; None when there are none."""
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(xs)
    if n == 0:
        return None
    mean = math.fsum(xs) / n
    if n == 1:
        return Estimate(mean, None, None, 1)
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_quantile(n - 1, level) * sd / math.sqrt(n)
    return Estimate(mean, mean - half, mean + half, n)


def metric_keys(summaries: Iterable[Mapping[str, Any] | None]) -> list[str]:
    keys: set[str] = set()
    for s in summaries:
        for k, v in ((s or {}).get("metrics") or {}).items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                keys.add(k)
    return sorted(keys)


def summary_value(summary: Mapping[str, Any] | None, key: str) -> float | None:
    value = ((summary or {}).get("metrics") or {}).get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def aggregate(
    n_configs: int, runs: Sequence[tuple[int, Mapping[str, Any] | None]], keys: Sequence[str]
) -> list[dict[str, Estimate | None]]:
    """Per configuration, per key, the estimate over its runs' summaries (``(config, summary)``;
    pass only the runs that count, e.g. the succeeded ones)."""
    out: list[dict[str, Estimate | None]] = []
    for c in range(n_configs):
        summaries = [s for cfg, s in runs if cfg == c]
        out.append(
            {
                k: mean_ci([v for s in summaries if (v := summary_value(s, k)) is not None])
                for k in keys
            }  # fmt: skip
        )
    return out


def best(estimates: Sequence[Mapping[str, Estimate | None]], metric: str, mode: str) -> int | None:
    """The configuration with the best mean of ``metric`` (ties: the lower index)."""
    scored = [(e[metric].mean, i) for i, e in enumerate(estimates) if e.get(metric) is not None]  # type: ignore[union-attr]
    if not scored:
        return None
    sign = 1.0 if mode == "min" else -1.0
    return min(scored, key=lambda si: (sign * si[0], si[1]))[1]


# --- 2^k factorial ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Effect:
    """A contrast of cell means with its t interval from the pooled within-cell variance."""

    estimate: float
    low: float | None
    high: float | None
    df: int

    def as_dict(self) -> dict[str, Any]:
        return {"effect": self.estimate, "ci_low": self.low, "ci_high": self.high, "df": self.df}


def factorial_effects(
    factors: Sequence[str],
    cells: Mapping[tuple[bool, ...], Sequence[float]],
    level: float = LEVEL,
) -> dict[str, Any] | None:
    """Main effects and two-way interactions of a 2^k design.

    ``cells`` maps each on/off combination (in ``factors`` order) to its observations (one per
    seed). With ±1 coding, an effect is ``Σ_c w_c · ȳ_c`` over the 2^k cell means where
    ``w_c = x_c / 2^(k-1)`` for a main effect (mean with the factor on minus mean with it off)
    and ``w_c = x_{c,A} · x_{c,B} / 2^(k-1)`` for the A×B interaction (half the change of A's
    effect when B is switched on). Its variance is ``s² · Σ_c w_c² / n_c`` with ``s²`` the pooled
    within-cell variance on ``Σ (n_c - 1)`` degrees of freedom, which also holds when some
    cells lost a run. None when a cell is empty.
    """
    k = len(factors)
    combos = list(itertools.product((False, True), repeat=k))
    obs = {
        c: [float(v) for v in cells.get(c, ()) if v is not None and math.isfinite(v)]
        for c in combos
    }
    if any(not obs[c] for c in combos):
        return None
    means = {c: math.fsum(v) / len(v) for c, v in obs.items()}
    df = sum(len(v) - 1 for v in obs.values())
    ss = math.fsum((x - means[c]) ** 2 for c, v in obs.items() for x in v)
    s2 = ss / df if df > 0 else None
    t = t_quantile(df, level) if df > 0 else None
    scale = 2.0 ** (k - 1)

    def contrast(sign) -> Effect:
        weights = {c: sign(c) / scale for c in combos}
        est = math.fsum(weights[c] * means[c] for c in combos)
        if s2 is None or t is None:
            return Effect(est, None, None, df)
        half = t * math.sqrt(s2 * math.fsum(weights[c] ** 2 / len(obs[c]) for c in combos))
        return Effect(est, est - half, est + half, df)

    def x(c: tuple[bool, ...], i: int) -> float:
        return 1.0 if c[i] else -1.0

    main = {f: contrast(lambda c, i=i: x(c, i)).as_dict() for i, f in enumerate(factors)}
    inter = {
        f"{factors[i]}:{factors[j]}": contrast(lambda c, i=i, j=j: x(c, i) * x(c, j)).as_dict()
        for i, j in itertools.combinations(range(k), 2)
    }
    return {"main_effects": main, "interactions": inter, "pooled_sd": math.sqrt(s2) if s2 else None}
