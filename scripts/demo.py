"""`make demo`: the example comparison (MNIST-1D: none vs l2 vs dropout vs label smoothing vs
early stopping), printed as a table of test accuracy, gen_gap and ECE, with a plot of the
learning curves and gen_gap per regularizer written to demo-out/comparison.png.

By default it runs through the service, on the embedded default (`reglab serve` with SQLite and
a broker that needs no server, in demo-out/service), submitting each variant over HTTP; with
--local it trains in this process through `regcore` alone.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.demo_plot import plot_comparison, print_table  # noqa: E402

EXAMPLE = ROOT / "examples" / "mnist1d-comparison.sweep.json"


def variants() -> dict[str, dict[str, Any]]:
    """One spec per value of the example sweep's ``regularizers`` (named after them)."""
    sweep = json.loads(EXAMPLE.read_text())
    out = {}
    for regs in sweep["space"]["regularizers"]:
        name = "+".join(r["name"] for r in regs) or "none"
        spec = copy.deepcopy(sweep["base"])
        spec["name"], spec["regularizers"] = f"demo-{name}", regs
        out[name] = spec
    return out


def run_local(specs: dict[str, dict[str, Any]], out: Path) -> dict[str, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from regcore.experiment import run as run_experiment
    from regcore.spec import parse_spec
    from reglab.run_cli import ProgressReporter, console

    results = {}
    progress = Progress(
        TextColumn("{task.description:16s}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        console=console(),
    )
    with progress:
        for name, spec in specs.items():
            reporter = ProgressReporter(progress)
            r = run_experiment(
                parse_spec(spec),
                workdir=out / "runs" / name,
                reporter=reporter,
                cache_dir=out / "cache",
                checkpoint_every=0,
            )
            progress.update(reporter.task, description=name)
            results[name] = {"summary": r.summary(), "series": _series(out / "runs" / name)}
    return results


def _series(workdir: Path) -> dict[str, list[dict[str, float]]]:
    series: dict[str, list[dict[str, float]]] = {}
    for line in (workdir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        series.setdefault(rec["key"], []).append({"step": rec["step"], "value": rec["value"]})
    return series


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local", action="store_true", help="train in-process, no service")
    parser.add_argument("--out", type=Path, default=ROOT / "demo-out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    specs = variants()
    t0 = time.perf_counter()
    if args.local:
        results = run_local(specs, args.out)
    else:
        from scripts.demo_service import run_through_service

        results = run_through_service(specs, args.out)
    print_table(results)
    png = plot_comparison(results, args.out / "comparison.png")
    print(f"plot: {png}\ntotal {time.perf_counter() - t0:.0f} s")
    return 0 if all(r["summary"]["status"] == "succeeded" for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
