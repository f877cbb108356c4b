"""Experiments through the API: ``reglab ls``, ``show``, ``cancel``, ``metrics``, ``checkpoints``,
``download``. Every ID may be a unique prefix of the id (an ambiguous one is an error listing the
matches)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from reglab.common import ApiKey, ApiUrl, Output, api, fail
from reglab.output import Col, num, say

Id = Annotated[str, typer.Argument(metavar="ID", help="experiment id or a unique prefix")]
#: the metrics ``ls`` shows when the filter and sort name none
HEADLINE = ("test_acc", "test_loss", "gen_gap")


def headline_metrics(experiment: dict[str, Any]) -> dict[str, Any]:
    """The final metrics of a list item (a lean view's ``metrics`` or the full ``summary``)."""
    if isinstance(experiment.get("metrics"), dict):
        return experiment["metrics"]
    return (experiment.get("summary") or {}).get("metrics") or {}


def ls(
    filter: Annotated[
        str | None,
        typer.Option("--filter", "-f", help="e.g. 'test_acc>0.8 and status=succeeded'"),
    ] = None,
    sort: Annotated[str | None, typer.Option("--sort", "-s", help="e.g. -test_acc")] = None,
    status: Annotated[str | None, typer.Option(help="only this status")] = None,
    name: Annotated[str | None, typer.Option(help="only this name")] = None,
    limit: Annotated[int, typer.Option(help="at most this many (0: all)")] = 50,
    metric: Annotated[
        list[str] | None, typer.Option("--metric", "-m", help="metric columns (repeatable)")
    ] = None,
    output: Output = "table",
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Experiments, newest first (or by --sort), with their headline metrics."""
    from itertools import islice

    from reglab.output import print_json, table

    with api(api_url, api_key, "filter") as client:
        pages = client.iter_experiments(
            status, name, page_size=min(limit or 500, 500), filter=filter, sort=sort
        )
        items = list(islice(pages, limit or None))
    if output == "json":
        print_json({"items": items})
        return
    keys = list(metric or [])
    if not keys:
        sorted_by = (sort or "").lstrip("+-")
        seen = {k for e in items for k in headline_metrics(e)}
        keys = [k for k in (sorted_by, *HEADLINE) if k in seen]
        keys = list(dict.fromkeys(keys))
    rows = [
        (
            e["id"],
            e.get("name"),
            e.get("status"),
            e.get("created_at"),
            *(num(headline_metrics(e).get(k)) for k in keys),
            ", ".join(f"{k}={v}" for k, v in (e.get("tags") or {}).items()),
        )
        for e in items
    ]
    columns: list[Col | str] = [Col("id", whole=True), "name", "status", "created"]
    columns += [Col(k, right=True) for k in keys] + ["tags"]
    table(columns, rows, fmt=output)


def show(
    experiment_id: Id,
    output: Output = "table",
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """One experiment: status, times, progress, error, spec and final metrics."""
    import json

    from reglab.output import print_json, table

    with api(api_url, api_key) as client:
        e: dict[str, Any] = dict(client.get(client.resolve_experiment(experiment_id)))
    if output == "json":
        print_json(e)
        return
    progress = e.get("progress") or {}
    summary = e.get("summary") or {}
    rows: list[tuple[str, Any]] = [
        (k, e.get(k))
        for k in ("id", "name", "status", "created_at", "started_at", "finished_at", "error")
        if e.get(k) is not None
    ]
    rows.append(("progress", f"{progress.get('epoch', 0)}/{progress.get('epochs') or '?'} epochs"))
    rows += [(f"tags.{k}", v) for k, v in (e.get("tags") or {}).items()]
    if e.get("note"):
        rows.append(("note", e["note"]))
    rows += [(k, summary[k]) for k in ("epochs_run", "best_epoch") if k in summary]
    rows += [(k, num(v)) for k, v in sorted(headline_metrics(e).items())]
    if e.get("spec") is not None:
        rows.append(("spec", json.dumps(e["spec"], separators=(",", ":"))))
    table(["field", "value"], rows, title=f"experiment {e['id']}", fmt=output)


def cancel(experiment_id: Id, api_url: ApiUrl = None, api_key: ApiKey = None) -> None:
    """Cancel: a queued experiment ends now, a running one within an epoch."""
    with api(api_url, api_key) as client:
        e = client.cancel(client.resolve_experiment(experiment_id))
    say(f"experiment {e['id']}: {e['status']}")
    print(e["status"])


def metrics(
    experiment_id: Id,
    keys: Annotated[
        list[str] | None, typer.Argument(metavar="KEY...", help="metric keys (default: all)")
    ] = None,
    max_points: Annotated[
        int | None, typer.Option(help="downsample each series to this many points")
    ] = None,
    output: Output = "table",
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """The metric series: one row per step, one column per key."""
    from reglab.output import print_json, table

    with api(api_url, api_key, "metric keys") as client:
        series = client.metrics(client.resolve_experiment(experiment_id), keys, max_points)
    if output == "json":
        print_json({"series": series})
        return
    names = list(series)
    by_step: dict[int, dict[str, Any]] = {}
    for k, points in series.items():
        for p in points:
            by_step.setdefault(p["step"], {})[k] = p["value"]
    rows = [(step, *(num(v.get(k)) for k in names)) for step, v in sorted(by_step.items())]
    table([Col("step", right=True), *(Col(k, right=True) for k in names)], rows, fmt=output)


def checkpoints(
    experiment_id: Id, output: Output = "table", api_url: ApiUrl = None, api_key: ApiKey = None
) -> None:
    """The experiment's checkpoints: id, kind, epoch, size, sha256."""
    from reglab.output import print_json, table

    with api(api_url, api_key) as client:
        items = client.checkpoints(client.resolve_experiment(experiment_id))
    if output == "json":
        print_json({"items": items})
        return
    rows = [
        (
            c["id"],
            c.get("kind"),
            c.get("epoch"),
            c.get("size"),
            c.get("sha256"),
            c.get("created_at"),
        )
        for c in items
    ]
    columns: list[Col | str] = [
        Col("id", whole=True),
        "kind",
        Col("epoch", right=True),
        Col("bytes", right=True),
    ]
    columns += [Col("sha256", whole=True), "created"]
    table(columns, rows, fmt=output)


def pick_checkpoint(items: Sequence[Mapping[str, Any]], wanted: str | None) -> Mapping[str, Any]:
    """The checkpoint whose id starts with ``wanted``, or (None) the best, else the newest."""
    if not items:
        fail("the experiment has no checkpoints (yet)", 2)
    if wanted is None:
        best = [c for c in items if c.get("kind") == "best"]
        return max(best or items, key=lambda c: (c.get("epoch") or 0, c.get("created_at") or ""))
    matches = [c for c in items if c["id"].startswith(wanted.lower()) or c.get("kind") == wanted]
    if len(matches) != 1:
        ids = ", ".join(c["id"] for c in matches) or "none"
        fail(
            f"checkpoint {wanted!r} matches {len(matches)} checkpoint(s) ({ids})",
            2 if matches else 1,  # ambiguous: bad input; none: not found
        )
    return matches[0]


def download(
    experiment_id: Id,
    checkpoint_id: Annotated[
        str | None,
        typer.Argument(metavar="[CID]", help="checkpoint id, prefix or kind (default: best)"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="file or folder to write (default: here)")
    ] = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Download a checkpoint's safetensors weights (its sha256 checked) and print the path."""
    with api(api_url, api_key) as client:
        eid = client.resolve_experiment(experiment_id)
        ckpt = pick_checkpoint(client.checkpoints(eid), checkpoint_id)
        path = client.download_checkpoint(eid, ckpt["id"], out or Path.cwd(), ckpt.get("sha256"))
    say(f"checkpoint {ckpt['id']} ({ckpt.get('kind')}, epoch {ckpt.get('epoch')})")
    print(path)
