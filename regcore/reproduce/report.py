"""The suite's report: one Markdown file, one PNG per claim (the compared quantity per arm,
mean with its 95% interval and every seed's value)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from regcore.reproduce.runner import ClaimResult
from regcore.reproduce.verdict import interval, value


def _bars(result: ClaimResult) -> list[tuple[str, list[float]]]:
    """(label, per-seed values) for each bar: every arm's metric; a ``close`` statistic with a
    derived side adds that side as its own bar."""
    stat = result.claim.statistic
    bars = []
    sides = [(arm, stat.metric) for arm in result.claim.arms]
    if stat.b_metric:
        sides.append((stat.b, stat.b_metric))
    for arm, metric in sides:
        vals = []
        for m, s in zip(result.runs[arm], result.specs[arm], strict=True):
            try:
                vals.append(value(metric, m, s))
            except KeyError:
                vals.append(math.nan)
        label = arm if metric == stat.metric else f"{arm}: {metric}"
        bars.append((f"{label}" if len(sides) > 1 else arm, vals))
    return bars


def plot(result: ClaimResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = _bars(result)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for i, (label, vals) in enumerate(bars):
        ok = [v for v in vals if not math.isnan(v)]
        if not ok:
            continue
        mean, low, high = interval(ok)
        err = [[mean - low], [high - mean]] if math.isfinite(low) else None
        ax.bar(i, mean, yerr=err, capsize=6, color=f"C{i}", alpha=0.6, label=label)
        ax.scatter([i] * len(ok), ok, color="k", s=12, zorder=3)
    ax.set_xticks(range(len(bars)), [b[0] for b in bars], fontsize=8)
    ax.set_ylabel(result.claim.statistic.metric)
    ax.set_title(f"{result.claim.id}: {result.verdict.word}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(results: Sequence[ClaimResult], out: Path, header: Sequence[str] = ()) -> Path:
    """Write ``out/report.md`` and ``out/<claim>.png``; returns the Markdown file's path."""
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# RegLab reproduce: the source texts' claims", "", *header, ""]
    lines += ["| claim | verdict | statistic (mean, 95% interval) | seeds | seconds |"]
    lines += ["| --- | --- | --- | --- | --- |"]
    for r in results:
        v = r.verdict
        lines.append(
            f"| [{r.claim.id}](#{r.claim.id}) | **{v.word}** | {v.mean:.4g} "
            f"[{v.low:.4g}, {v.high:.4g}] | {len(r.seeds)} | {r.seconds:.1f} |"
        )
    for r in results:
        v, c = r.verdict, r.claim
        png = f"{c.id}.png"
        plot(r, out / png)
        lines += ["", f"## {c.id}", "", f"**Claim**: {c.claim}.", "", f"**Source**: {c.source}."]
        lines += ["", f"**Criterion**: {v.criterion}.", "", f"**Verdict**: {v.word} ({v.reason})."]
        lines += ["", "| arm | spec overrides |", "| --- | --- |"]
        lines += [f"| {arm} | `{over or 'base spec'}` |" for arm, over in c.arms.items()]
        lines += ["", f"Base spec: `{c.base}`", ""]
        per = ", ".join(f"{s}: {x:.4g}" for s, x in zip(r.seeds, v.per_seed, strict=False))
        lines += [f"Per seed: {per}.", "", f"![{c.id}]({png})"]
        if r.errors:
            lines += ["", "Failed runs:", *[f"- {e}" for e in r.errors]]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
