"""``reglab logs ID [-f]``: an experiment's run log lines, through the API.

One line each: time, level, message. ``-f`` follows the run (server-sent events) and returns
when it has ended; ``-o json`` prints ``{"items": [...]}`` (with ``-f``, one JSON object a line).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any, Literal

import typer

from reglab.common import ApiKey, ApiUrl, api

Id = Annotated[str, typer.Argument(metavar="ID", help="experiment id or a unique prefix")]


def format_line(line: dict[str, Any]) -> str:
    when = (line.get("time") or "")[:19].replace("T", " ")
    return f"{when} {line['level']:<7} {line['message']}"


def logs(
    experiment_id: Id,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="stream new lines until the run ends")
    ] = False,
    since: Annotated[int, typer.Option(help="only lines after this seq")] = 0,
    output: Annotated[
        Literal["text", "json"],
        typer.Option("--output", "-o", help="text, or json", case_sensitive=False),
    ] = "text",
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """The experiment's log lines: the worker's claim, resume, retry, cancel and failure
    messages, and the training's own logging and warnings."""
    with api(api_url, api_key) as client:
        eid = client.resolve_experiment(experiment_id)
        if follow:
            for line in client.follow_logs(eid, since=since):
                out = json.dumps(line) if output == "json" else format_line(line)
                sys.stdout.write(out + "\n")
                sys.stdout.flush()
            return
        items: list[dict[str, Any]] = []
        while True:
            page = client.logs(eid, since=since)
            items.extend(page["items"])
            if not page["items"] or page["next_since"] >= page["last_seq"]:
                break
            since = page["next_since"]
    if output == "json":
        sys.stdout.write(json.dumps({"items": items}, indent=2) + "\n")
        return
    sys.stdout.writelines(format_line(line) + "\n" for line in items)
