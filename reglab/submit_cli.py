"""``reglab submit SPEC.json [--wait]``: submit through the API, follow with a progress bar."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reglab.common import ApiKey, ApiUrl, api, fail, read_json
from reglab.output import say

if TYPE_CHECKING:  # pragma: no cover
    from reglab.client import Experiment, RegLabClient


def print_experiment(experiment: Mapping[str, Any]) -> None:
    """An experiment's status and final metrics as a table."""
    from reglab.output import Col, num, table

    summary = experiment.get("summary") or {}
    rows = [("status", experiment["status"])]
    rows += [(k, str(summary[k])) for k in ("epochs_run", "best_epoch") if k in summary]
    rows += [(k, num(v)) for k, v in sorted((summary.get("metrics") or {}).items())]
    title = f"{experiment['name']} ({experiment['id']}): {experiment['status']}"
    table(["metric", Col("value", right=True)], rows, title=title)


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
    with api(api_url, api_key, f"spec {spec}") as client:
        experiment = client.submit(data, idempotency_key=idempotency_key)
        say(f"submitted [bold]{experiment['id']}[/bold] ({experiment['status']})")
        if not wait:
            print(experiment["id"])
            return
        final = follow(client, experiment, timeout, poll)
    print_experiment(final)
    if final["status"] != "succeeded":
        fail(f"experiment {final['id']} ended {final['status']}: {final.get('error')}", 1)


def follow(
    client: RegLabClient, experiment: Mapping[str, Any], timeout: float | None, poll: float
) -> Experiment:
    """Poll the experiment to its end, with a progress bar over its epochs (on stderr)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from reglab.output import stderr

    with Progress(
        TextColumn("[bold]{task.fields[status]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("epochs"),
        TimeElapsedColumn(),
        console=stderr(),
    ) as progress:
        total = experiment.get("progress", {}).get("epochs") or None
        task = progress.add_task("experiment", total=total, status=experiment["status"])

        def update(e: Experiment) -> None:
            p = e.get("progress") or {}
            progress.update(
                task, completed=p.get("epoch", 0), total=p.get("epochs") or None, status=e["status"]
            )

        return client.wait(experiment["id"], timeout=timeout, poll=poll, on_progress=update)
