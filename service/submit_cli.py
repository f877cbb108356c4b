"""``reglab submit SPEC.json [--wait]``: submit through the API, follow with a progress bar."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from service.client import (
    InvalidSpecError,
    RegLabAPIError,
    RegLabClient,
    RegLabError,
    WaitTimeout,
)

err = Console(stderr=True)
out = Console()


#: options every command that talks to the API takes
ApiUrl = Annotated[
    str | None, typer.Option("--api-url", envvar="REGLAB_API_URL", help="the RegLab API")
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="REGLAB_API_KEY",
        help="API key sent as 'Authorization: Bearer <key>' (needed when auth is on)",
        show_default=False,
    ),
]


def fail(message: str, code: int) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def read_json(path: Path) -> Any:
    """The JSON in ``path``; exits 2 with a clear message when it is missing or malformed."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise fail(f"file not found: {path}", 2) from None
    except json.JSONDecodeError as exc:
        raise fail(f"{path} is not valid JSON: {exc}", 2) from None


def invalid_lines(exc: InvalidSpecError) -> str:
    """A 422's field errors, one ``  field: message`` line each."""
    details = exc.detail if isinstance(exc.detail, list) else []
    return "\n".join(f"  {d.get('field')}: {d.get('message')}" for d in details) or str(exc)


def describe(exc: RegLabError) -> str:
    """The error, with how to send a key when the server wants one."""
    if isinstance(exc, RegLabAPIError) and exc.status == 401:
        return f"{exc}\n(pass --api-key KEY or set REGLAB_API_KEY; `reglab keys create` makes one)"
    return str(exc)


def _summary_table(experiment: dict[str, Any]) -> Table:
    table = Table(title=f"{experiment['name']} ({experiment['id']}): {experiment['status']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    summary = experiment.get("summary") or {}
    for key in ("epochs_run", "best_epoch"):
        if key in summary:
            table.add_row(key, str(summary[key]))
    for key, value in sorted((summary.get("metrics") or {}).items()):
        table.add_row(key, "null" if value is None else f"{value:.4g}")
    return table


def submit(
    spec: Annotated[Path, typer.Argument(help="experiment spec (JSON)", exists=False)],
    wait: Annotated[bool, typer.Option("--wait", help="follow until it ends")] = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="makes a retried submit safe")
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="seconds to wait at most")] = None,
    poll: Annotated[float, typer.Option(help="seconds between status polls")] = 1.0,
) -> None:
    """Submit SPEC.json to the RegLab service; with --wait, show progress and the summary."""
    data = read_json(spec)

    with RegLabClient(api_url, api_key) as client:
        try:
            experiment = client.submit(data, idempotency_key=idempotency_key)
        except InvalidSpecError as exc:
            raise fail(f"invalid spec {spec}:\n{invalid_lines(exc)}", 2) from None
        except RegLabError as exc:
            raise fail(describe(exc), 1) from None
        err.print(f"submitted [bold]{experiment['id']}[/bold] ({experiment['status']})")
        if not wait:
            out.print(experiment["id"], highlight=False)
            return
        try:
            final = _follow(client, experiment, timeout, poll)
        except WaitTimeout as exc:
            raise fail(describe(exc), 1) from None
        except RegLabError as exc:
            raise fail(describe(exc), 1) from None
    out.print(_summary_table(final))
    if final["status"] != "succeeded":
        raise fail(f"experiment {final['id']} ended {final['status']}: {final.get('error')}", 1)


def _follow(
    client: RegLabClient, experiment: dict[str, Any], timeout: float | None, poll: float
) -> dict[str, Any]:
    with Progress(
        TextColumn("[bold]{task.fields[status]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("epochs"),
        TimeElapsedColumn(),
        console=err,
    ) as progress:
        total = experiment.get("progress", {}).get("epochs") or None
        task = progress.add_task("experiment", total=total, status=experiment["status"])

        def update(e: dict[str, Any]) -> None:
            p = e.get("progress") or {}
            progress.update(
                task, completed=p.get("epoch", 0), total=p.get("epochs") or None, status=e["status"]
            )

        return client.wait(experiment["id"], timeout=timeout, poll=poll, on_progress=update)
