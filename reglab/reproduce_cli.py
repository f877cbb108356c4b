"""``reglab reproduce``: run the source texts' claims (``regcore.reproduce``) and write a report.

Locally through ``regcore.experiment.run`` by default; with ``--api-url`` every run is submitted
to the service and its final metrics read back through ``reglab.client``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from reglab.common import ApiKey, fail


def _api_executor(client: Any, timeout: float | None) -> Any:
    def execute(spec: Mapping[str, Any]) -> Mapping[str, float]:
        e = client.wait(client.submit(dict(spec))["id"], timeout=timeout)
        if e["status"] != "succeeded":
            raise RuntimeError(f"experiment {e['id']} {e['status']}: {e.get('error')}")
        return dict((e.get("summary") or {}).get("metrics") or {})

    return execute


def reproduce(
    out: Annotated[Path, typer.Option("--out", "-o", help="report folder")] = Path("reproduce"),
    quick: Annotated[
        bool, typer.Option("--quick", help="fewer epochs and 3 seeds (under 10 min on 2 cores)")
    ] = False,
    seeds: Annotated[
        int | None, typer.Option(help="seeds per claim (default 3 quick, 5 full)")
    ] = None,
    claim: Annotated[
        list[str] | None, typer.Option("--claim", help="run only this claim (repeatable)")
    ] = None,
    list_claims: Annotated[bool, typer.Option("--list", help="list the claims and exit")] = False,
    cache_dir: Annotated[Path | None, typer.Option(help="dataset cache (local runs)")] = None,
    api_url: Annotated[
        str | None, typer.Option("--api-url", help="run through this RegLab API instead of locally")
    ] = None,
    api_key: ApiKey = None,
    timeout: Annotated[float | None, typer.Option(help="API: seconds to wait per run")] = None,
) -> None:
    """Check the source texts' claims (L1 sparser than L2, label smoothing calibrates, ...) over
    several seeds; writes OUT/report.md with a verdict and a plot per claim."""
    from regcore.reproduce.claims import CLAIMS
    from regcore.reproduce.report import write_report
    from regcore.reproduce.runner import local_executor, run_suite

    if list_claims:
        for c in CLAIMS:
            print(f"{c.id}\t{c.claim}\t[{c.source}]")
        return
    n = seeds if seeds is not None else (3 if quick else 5)
    if n < 2:
        fail("--seeds: at least 2 (an interval needs two values)", 2)
    t0 = time.perf_counter()
    where = f"through {api_url}" if api_url else "locally"

    def progress(what: str) -> None:
        typer.echo(f"[{time.perf_counter() - t0:7.1f}s] {what}", err=True)

    try:
        if api_url:
            from reglab.common import api

            with api(api_url, api_key, "reproduce") as client:
                results = run_suite(
                    _api_executor(client, timeout), range(n), quick, claim, progress
                )
        else:
            results = run_suite(local_executor(cache_dir), range(n), quick, claim, progress)
    except ValueError as exc:
        fail(f"--claim: {exc}", 2)
    took = time.perf_counter() - t0
    mode = "quick" if quick else "full"
    header = [f"Mode: {mode}, {n} seeds, run {where}; the suite took {took:.0f} s."]
    path = write_report(results, out, header)
    for r in results:
        typer.echo(f"{r.claim.id}: {r.verdict.word} ({r.verdict.reason})")
    typer.echo(f"report: {path} ({mode} mode, {took:.0f} s)")
