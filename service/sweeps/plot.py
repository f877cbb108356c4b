"""PNG plots of a sweep's results (matplotlib's Agg canvas; no pyplot, so no global state and
safe in a threaded server). Imported lazily by the API: matplotlib is slow to import.

- ``line_plot``: a metric (mean over seeds with its 95% band) against one parameter of the
  space, one line per combination of the other parameters; a log x axis when the values span
  more than two decades.
- ``reliability_plot``: calibration from what every run records, its mean confidence (max
  softmax probability on the test split) and its test accuracy: one point per configuration
  with its interval on accuracy, against the diagonal of perfect calibration. The per-bin
  reliability diagram of a single run would need each bin's confidence and accuracy, which
  runs do not record (they record the ECE those bins give); points above the diagonal are
  under-confident, below it over-confident.
"""

from __future__ import annotations

import io
import math
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


def line_plot(table: Sequence[Mapping[str, Any]], x: str, y: str, title: str = "") -> bytes:
    """``table``: the results' rows (``params`` and ``metrics[y]``)."""
    groups: dict[str, list[tuple[Any, Mapping[str, Any]]]] = {}
    for row in table:
        est = row["metrics"].get(y)
        if est is None:
            continue
        rest = {k: v for k, v in row["params"].items() if k != x}
        groups.setdefault(_label(rest), []).append((row["params"][x], est))
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
            ax.fill_between(xs, lows, highs, alpha=0.2, color=line.get_color())
    if numeric and min(xs_all) > 0 and max(xs_all) / min(xs_all) > 100:
        ax.set_xscale("log")
    if categories:
        ax.set_xticks(range(len(categories)), categories)
    ax.set_xlabel(x)
    ax.set_ylabel(f"{y} (mean, 95% CI)")
    ax.set_title(title or f"{y} against {x}")
    if len(groups) > 1:
        ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return _png(fig)


def reliability_plot(table: Sequence[Mapping[str, Any]], title: str = "") -> bytes:
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    for row in table:
        conf, acc = row["metrics"].get("confidence"), row["metrics"].get("test_acc")
        if conf is None or acc is None:
            continue
        err = None
        if acc["ci_low"] is not None:
            err = [[acc["mean"] - acc["ci_low"]], [acc["ci_high"] - acc["mean"]]]
        ece = row["metrics"].get("ece")
        extra = f" (ECE {ece['mean']:.3f})" if ece else ""
        ax.errorbar(
            [conf["mean"]], [acc["mean"]], yerr=err, marker="o", capsize=3,
            label=_label(row["params"]) + extra,
        )  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean confidence (test)")
    ax.set_ylabel("test accuracy (mean, 95% CI)")
    ax.set_title(title or "calibration per configuration")
    ax.legend(fontsize="x-small")
    ax.grid(alpha=0.3)
    return _png(fig)
