"""PNG plots of a sweep's results (matplotlib's Agg canvas; no pyplot, so no global state and
safe in a threaded server). Imported lazily by the API: matplotlib is slow to import.

- ``line_plot``: a metric (mean over seeds with its 95% band) against one parameter of the
  space, one line per combination of the other parameters; a log x axis when the values are
  log-spaced (``log_spaced``), and bands clipped to the range the metric can take
  (``metric_range``: an accuracy's interval never passes 1). The dashboard's sweep page
  (service/ui/static/stats.js) applies the same two rules.
- ``reliability_plot``: calibration from what every run records, its mean confidence (max
  softmax probability on the test split) and its test accuracy: one point per configuration
  with its interval on accuracy, against the diagonal of perfect calibration. The per-bin
  reliability diagram of a single run would need each bin's confidence and accuracy, which
  runs do not record (they record the ECE those bins give); points above the diagonal are
  under-confident, below it over-confident. The axes span the points (with a margin) rather
  than all of [0, 1], so configurations close together stay apart.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def _label(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in params.items()) or "all"


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _numeric(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def log_spaced(values: Sequence[Any]) -> bool:
    """All positive numbers, and spanning more than a decade or evenly spaced in log (the ratios
    of neighbours within 10% of each other while their differences are not)."""
    xs = sorted({float(v) for v in values if _numeric(v)})
    if len(xs) < 2 or xs[0] <= 0 or not all(_numeric(v) for v in values):
        return False
    if xs[-1] / xs[0] > 10:
        return True
    if len(xs) < 3:
        return False
    steps = [math.log(b) - math.log(a) for a, b in zip(xs, xs[1:], strict=False)]
    diffs = [b - a for a, b in zip(xs, xs[1:], strict=False)]

    def spread(a: list[float]) -> float:
        return (max(a) - min(a)) / max(a)

    return spread(steps) < 0.1 and spread(diffs) > 0.1


_UNIT = re.compile(r"(^|_)(acc|accuracy|ece|confidence|sparsity)($|_)")
_NON_NEGATIVE = re.compile(r"loss|norm|lr|penalty|_s$|_mb$|percent")


def metric_range(key: str) -> tuple[float, float]:
    """The values a metric can take, from its name: accuracies, ECE, confidence and sparsity in
    [0, 1]; losses, norms, lr and system figures non-negative; anything else (gen_gap is
    val_loss - train_loss) unbounded."""
    k = key.lower()
    if k == "gen_gap":
        return (-math.inf, math.inf)
    if _UNIT.search(k):
        return (0.0, 1.0)
    if _NON_NEGATIVE.search(k):
        return (0.0, math.inf)
    return (-math.inf, math.inf)


def _clip(v: float, bounds: tuple[float, float]) -> float:
    return min(bounds[1], max(bounds[0], v))


def line_plot(table: Sequence[Mapping[str, Any]], x: str, y: str, title: str = "") -> bytes:
    """``table``: the results' rows (``params`` and ``metrics[y]``)."""
    return _png(line_figure(table, x, y, title))


def line_figure(table: Sequence[Mapping[str, Any]], x: str, y: str, title: str = ""):
    groups: dict[str, list[tuple[Any, Mapping[str, Any]]]] = {}
    for row in table:
        est = row["metrics"].get(y)
        if est is None:
            continue
        rest = {k: v for k, v in row["params"].items() if k != x}
        groups.setdefault(_label(rest), []).append((row["params"][x], est))
    bounds = metric_range(y)
    fig = _figure()
    ax = fig.add_subplot()
    xs_all = [xv for pts in groups.values() for xv, _ in pts]
    numeric = bool(xs_all) and all(_numeric(v) for v in xs_all)
    categories = sorted({_fmt(v) for v in xs_all}) if not numeric else []
    for label, pts in sorted(groups.items()):
        pts.sort(key=lambda p: p[0] if numeric else _fmt(p[0]))
        xs = [p[0] if numeric else categories.index(_fmt(p[0])) for p in pts]
        means = [p[1]["mean"] for p in pts]
        line = ax.plot(xs, means, marker="o", label=label)[0]
        lows = [p[1]["ci_low"] for p in pts]
        highs = [p[1]["ci_high"] for p in pts]
        if all(v is not None for v in lows + highs):
            lows = [_clip(v, bounds) for v in lows]
            highs = [_clip(v, bounds) for v in highs]
            ax.fill_between(xs, lows, highs, alpha=0.2, color=line.get_color())
    if numeric and log_spaced(xs_all):
        ax.set_xscale("log")
    if categories:
        ax.set_xticks(range(len(categories)), categories)
    ax.set_xlabel(x)
    ax.set_ylabel(f"{y} (mean, 95% CI)")
    ax.set_title(title or f"{y} against {x}")
    if len(groups) > 1:
        ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def reliability_plot(table: Sequence[Mapping[str, Any]], title: str = "") -> bytes:
    return _png(reliability_figure(table, title))


def reliability_figure(table: Sequence[Mapping[str, Any]], title: str = ""):
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    seen: list[float] = []
    for row in table:
        conf, acc = row["metrics"].get("confidence"), row["metrics"].get("test_acc")
        if conf is None or acc is None:
            continue
        err = None
        seen += [conf["mean"], acc["mean"]]
        if acc["ci_low"] is not None:
            low, high = max(0.0, acc["ci_low"]), min(1.0, acc["ci_high"])
            err = [[acc["mean"] - low], [high - acc["mean"]]]
            seen += [low, high]
        ece = row["metrics"].get("ece")
        extra = f" (ECE {ece['mean']:.3f})" if ece else ""
        ax.errorbar(
            [conf["mean"]], [acc["mean"]], yerr=err, marker="o", capsize=3,
            label=_label(row["params"]) + extra,
        )  # fmt: skip
    # one square window around the points (the diagonal stays a diagonal), not all of [0, 1]
    if seen:
        lo, hi = min(seen), max(seen)
        pad = max(0.02, 0.1 * (hi - lo))
        lo, hi = max(0.0, lo - pad), min(1.0, hi + pad)
    else:
        lo, hi = 0.0, 1.0
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_xlabel("mean confidence (test)")
    ax.set_ylabel("test accuracy (mean, 95% CI)")
    ax.set_title(title or "calibration per configuration")
    ax.legend(fontsize="x-small")
    ax.grid(alpha=0.3)
    return fig
