"""``reglab sweep SWEEP.json [--wait]``, ``reglab sweeps ls|show`` and ``reglab compare ID...``.

SWEEP.json is the body of ``POST /v1/sweeps``: ``{"base": <spec>, "space": {...}, "method":
"grid"|"random"|"factorial", "trials", "seeds", "max_concurrent", "metric", "mode",
"early_stopping": {"rule": "median"|"asha", ...}}``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from reglab.common import ApiKey, ApiUrl, Output, api, fail, read_json
from reglab.output import Col, num, say

sweeps = typer.Typer(help="Sweeps: list them, show one's results.", no_args_is_help=True)


def _ci(est: dict[str, Any] | None) -> str:
    if not est:
        return "—"
    if est.get("ci_low") is None:
        return f"{est['mean']:.4g}"
    return f"{est['mean']:.4g} ± {(est['ci_high'] - est['mean']):.2g}"


def print_results(sweep: dict[str, Any], keys: list[str] | None = None, fmt: Any = "table") -> None:
    """One row per configuration: its parameters, n, and each metric's mean ± 95% half-width;
    the best configuration is starred; a factorial sweep's effects follow."""
    from reglab.output import table

    res = sweep["results"]
    metric = res["metric"]
    keys = keys or [metric] + [k for k in ("test_acc", "test_loss", "gen_gap") if k != metric]
    keys = [k for k in keys if k in res["keys"]] or [metric]
    counts = ", ".join(f"{k} {v}" for k, v in sweep["counts"].items() if v)
    best = (res.get("best") or {}).get("config")
    rows = [
        (
            f"{row['config']}{' ★' if row['config'] == best else ''}",
            ", ".join(f"{p}={num(v)}" for p, v in row["params"].items()) or "base",
            row["n"],
            *(_ci(row["metrics"].get(k)) for k in keys),
        )
        for row in res["table"]
    ]
    columns: list[Col | str] = [Col("#", right=True), "parameters", Col("n", right=True)]
    columns += [Col(f"{k} (95% CI)", right=True) for k in keys]
    title = f"sweep {sweep['name']} ({sweep['id']}): {sweep['status']} · {counts}"
    table(columns, rows, title=title, fmt=fmt)
    effects = (res.get("effects") or {}).get(metric)
    if effects:
        terms = {**effects["main_effects"], **effects["interactions"]}
        rows = [
            (
                term,
                f"{e['effect']:.4g}",
                "—" if e["ci_low"] is None else f"[{e['ci_low']:.3g}, {e['ci_high']:.3g}]",
            )
            for term, e in terms.items()
        ]
        effect_columns: list[Col | str] = [
            "term",
            Col("effect", right=True),
            Col("95% CI", right=True),
        ]
        table(effect_columns, rows, title=f"effects on {metric} (95% CI)", fmt=fmt)
    found = res.get("search")  # method search: the sampler's best and parameter importances
    if found and found.get("importances"):
        rows = [(p, f"{v:.3f}") for p, v in found["importances"].items()]
        table(["parameter", Col("importance", right=True)], rows, title="importances", fmt=fmt)


def sweep(
    body: Annotated[Path, typer.Argument(help="sweep request (JSON): base, space, method, ...")],
    wait: Annotated[bool, typer.Option("--wait", help="follow until every run ended")] = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    poll: Annotated[float, typer.Option(help="seconds between polls")] = 2.0,
    timeout: Annotated[float | None, typer.Option(help="seconds to wait at most")] = None,
) -> None:
    """Start a sweep (grid, random or factorial, with seeds); with --wait, print its results."""
    from reglab.output import stderr

    data = read_json(body)
    with api(api_url, api_key, f"sweep {body}") as client:
        s = client.create_sweep(data)
        say(f"sweep [bold]{s['id']}[/bold]: {len(s['experiments'])} experiments")
        if not wait:
            print(s["id"])
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        with stderr().status("") as status:
            while s["status"] == "running":
                c = s["counts"]
                status.update(
                    f"{c['succeeded'] + c['failed'] + c['cancelled']}/{len(s['experiments'])}"
                    f" ended · {c['running']} running · {c['queued']} queued"
                )
                if deadline is not None and time.monotonic() > deadline:
                    fail(f"sweep {s['id']} still running after {timeout}s", 1)
                time.sleep(poll)
                s = client.sweep(s["id"])
    print_results(dict(s))


@sweeps.command("ls")
def list_sweeps(
    limit: Annotated[int, typer.Option(help="at most this many (newest first)")] = 50,
    output: Output = "table",
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Sweeps, newest first: id, name, status, method, and counts by status."""
    from itertools import islice

    from reglab.output import print_json, table

    with api(api_url, api_key) as client:
        items = list(islice(client.iter_sweeps(page_size=min(limit, 200)), limit))
    if output == "json":
        print_json({"items": items})
        return
    rows = [
        (
            s["id"],
            s["name"],
            s["status"],
            s.get("method"),
            s.get("created_at"),
            ", ".join(f"{k} {v}" for k, v in (s.get("counts") or {}).items() if v),
        )
        for s in items
    ]
    columns: list[Col | str] = [
        Col("id", whole=True),
        "name",
        "status",
        "method",
        "created",
        "counts",
    ]
    table(columns, rows, fmt=output)


@sweeps.command("show")
def show_sweep(
    sweep_id: Annotated[str, typer.Argument(metavar="ID", help="sweep id or a unique prefix")],
    keys: Annotated[
        list[str] | None, typer.Option("--key", "-k", help="metrics to show (repeatable)")
    ] = None,
    output: Output = "table",
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """A sweep's results: per configuration the mean and 95% interval over seeds."""
    from reglab.output import print_json

    with api(api_url, api_key) as client:
        s = client.sweep(client.resolve_sweep(sweep_id), keys or None)
    if output == "json":
        print_json(s)
        return
    print_results(dict(s), keys or None, fmt=output)


def compare(
    ids: Annotated[list[str], typer.Argument(help="experiment ids or unique prefixes (<= 100)")],
    output: Output = "table",
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Experiments side by side: status and final metrics."""
    from reglab.output import print_json, table

    with api(api_url, api_key) as client:
        data = client.compare(client.resolve_experiments(ids))
    if output == "json":
        print_json(data)
        return
    items = data["items"]
    columns: list[Col | str] = [
        Col(""),
        *(Col(f"{e['name']} {e['id']}", right=True) for e in items),
    ]
    rows = [("status", *(e["status"] for e in items))]
    rows += [(k, *(num(v.get(e["id"])) for e in items)) for k, v in data["table"].items()]
    table(columns, rows, title=f"{len(items)} experiments", fmt=output)
