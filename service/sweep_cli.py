"""``reglab sweep SWEEP.json [--wait]`` and ``reglab compare ID...``: through the REST API,
printing rich tables.

SWEEP.json is the body of ``POST /v1/sweeps``: ``{"base": <spec>, "space": {...}, "method":
"grid"|"random"|"factorial", "trials", "seeds", "max_concurrent", "metric", "mode",
"early_stopping": {"rule": "median"|"asha", ...}}``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from service.client import InvalidSpecError, RegLabClient, RegLabError
from service.submit_cli import ApiKey, ApiUrl, describe, fail, invalid_lines, read_json

err = Console(stderr=True)
out = Console()


class SweepClient(RegLabClient):
    """The client, with the sweep and compare routes."""

    def __enter__(self) -> SweepClient:
        return self

    def create_sweep(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/v1/sweeps", json=body)

    def sweep(self, sweep_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/sweeps/{sweep_id}")

    def cancel_sweep(self, sweep_id: str) -> dict[str, Any]:
        return self._json("POST", f"/v1/sweeps/{sweep_id}/cancel")

    def compare(self, ids: list[str], keys: list[str] | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"ids": ",".join(ids)}
        if keys:
            params["keys"] = ",".join(keys)
        return self._json("GET", "/v1/compare", params=params)


def _num(v: Any) -> str:
    return "—" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))


def _ci(est: dict[str, Any] | None) -> str:
    if not est:
        return "—"
    if est.get("ci_low") is None:
        return f"{est['mean']:.4g}"
    return f"{est['mean']:.4g} ± {(est['ci_high'] - est['mean']):.2g}"


def results_table(sweep: dict[str, Any], keys: list[str] | None = None) -> Table:
    res = sweep["results"]
    metric = res["metric"]
    keys = keys or [metric] + [k for k in ("test_acc", "test_loss", "gen_gap") if k != metric]
    keys = [k for k in keys if k in res["keys"]] or [metric]
    counts = ", ".join(f"{k} {v}" for k, v in sweep["counts"].items() if v)
    table = Table(title=f"sweep {sweep['name']} ({sweep['id']}): {sweep['status']} · {counts}")
    table.add_column("#", justify="right")
    table.add_column("parameters")
    table.add_column("n", justify="right")
    for k in keys:
        table.add_column(f"{k} (95% CI)", justify="right")
    best = (res.get("best") or {}).get("config")
    for row in res["table"]:
        params = ", ".join(f"{p}={_num(v)}" for p, v in row["params"].items()) or "base"
        mark = " ★" if row["config"] == best else ""
        table.add_row(
            f"{row['config']}{mark}",
            params,
            str(row["n"]),
            *(_ci(row["metrics"].get(k)) for k in keys),
        )
    return table


def effects_table(sweep: dict[str, Any]) -> Table | None:
    res = sweep["results"]
    effects = (res.get("effects") or {}).get(res["metric"])
    if not effects:
        return None
    table = Table(title=f"effects on {res['metric']} (95% CI)")
    table.add_column("term")
    table.add_column("effect", justify="right")
    table.add_column("95% CI", justify="right")
    terms = {**effects["main_effects"], **effects["interactions"]}
    for term, e in terms.items():
        ci = "—" if e["ci_low"] is None else f"[{e['ci_low']:.3g}, {e['ci_high']:.3g}]"
        table.add_row(term, f"{e['effect']:.4g}", ci)
    return table


def sweep(
    body: Annotated[Path, typer.Argument(help="sweep request (JSON): base, space, method, ...")],
    wait: Annotated[bool, typer.Option("--wait", help="follow until every run ended")] = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    poll: Annotated[float, typer.Option(help="seconds between polls")] = 2.0,
    timeout: Annotated[float | None, typer.Option(help="seconds to wait at most")] = None,
) -> None:
    """Start a sweep (grid, random or factorial, with seeds); with --wait, print its results."""
    data = read_json(body)
    with SweepClient(api_url, api_key) as client:
        try:
            s = client.create_sweep(data)
        except InvalidSpecError as exc:
            raise fail(f"invalid sweep {body}:\n{invalid_lines(exc)}", 2) from None
        except RegLabError as exc:
            raise fail(describe(exc), 1) from None
        err.print(f"sweep [bold]{s['id']}[/bold]: {len(s['experiments'])} experiments")
        if not wait:
            out.print(s["id"], highlight=False)
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            with err.status("") as status:
                while s["status"] == "running":
                    c = s["counts"]
                    status.update(
                        f"{c['succeeded'] + c['failed'] + c['cancelled']}/{len(s['experiments'])}"
                        f" ended · {c['running']} running · {c['queued']} queued"
                    )
                    if deadline is not None and time.monotonic() > deadline:
                        raise fail(f"sweep {s['id']} still running after {timeout}s", 1)
                    time.sleep(poll)
                    s = client.sweep(s["id"])
        except RegLabError as exc:
            raise fail(describe(exc), 1) from None
    out.print(results_table(s))
    effects = effects_table(s)
    if effects is not None:
        out.print(effects)


def compare(
    ids: Annotated[list[str], typer.Argument(help="experiment ids (at most 100)")],
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Experiments side by side: status and final metrics."""
    with SweepClient(api_url, api_key) as client:
        try:
            data = client.compare(ids)
        except RegLabError as exc:
            raise fail(describe(exc), 1) from None
    table = Table(title=f"{len(data['items'])} experiments")
    table.add_column("")
    for e in data["items"]:
        table.add_column(f"{e['name']}\n{e['id'][:8]}", justify="right")
    table.add_row("status", *(e["status"] for e in data["items"]))
    for key, by_id in data["table"].items():
        table.add_row(key, *(_num(by_id.get(e["id"])) for e in data["items"]))
    out.print(table)
