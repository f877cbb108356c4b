"""``reglab datasets upload|list|show|rm``: your datasets on the service (``/v1/datasets``).

A spec names an upload as ``"data": {"name": "upload", "id": "<id>"}``. IDs may be a unique
prefix of the id."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from reglab.common import ApiKey, ApiUrl, Output, api, fail

datasets = typer.Typer(help="Datasets: upload a file, list, show, remove.", no_args_is_help=True)

Id = Annotated[str, typer.Argument(metavar="ID", help="dataset id or a unique prefix")]


def _resolve(client: Any, prefix: str) -> str:
    items: Any = client.datasets()
    ids = [d["id"] for d in items if d.get("source") == "upload"]
    found = [i for i in ids if i.startswith(prefix)]
    if len(found) == 1:
        return found[0]
    if not found:
        fail(f"no dataset {prefix} (reglab datasets list)", 2)
    fail(f"dataset id prefix {prefix} is ambiguous: {', '.join(found[:10])}", 2)


def _rows(d: Mapping[str, Any]) -> list[tuple[str, Any]]:
    keys = ("id", "name", "task", "kind", "shape", "classes", "test_rows", "format", "bytes",
            "sha256", "created_at")  # fmt: skip
    return [(k, d.get(k)) for k in keys if k in d]


@datasets.command()
def upload(
    file: Annotated[Path, typer.Argument(help=".npz (x, y, x_test, y_test), .csv or .parquet")],
    target: Annotated[str | None, typer.Option(help="a table's label column")] = None,
    task: Annotated[str, typer.Option(help="classification or regression")] = "classification",
    name: Annotated[str | None, typer.Option(help="a name (default: the file's)")] = None,
    kind: Annotated[
        str | None, typer.Option(help="npz only: signal for (N, C, L) arrays; table, image")
    ] = None,
    output: Output = "table",
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Upload FILE; prints the dataset (its id goes in a spec's data section)."""
    from reglab.output import print_json, table

    if not file.is_file():
        fail(f"file not found: {file}", 2)
    with api(api_url, api_key, "dataset") as client:
        d = client.upload_dataset(file, name=name, task=task, target=target, kind=kind)
    if output == "json":
        print_json(d)
        return
    table(["field", "value"], _rows(d), fmt=output)


@datasets.command("list")
def list_(
    output: Output = "table",
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """The built-in datasets and your uploads."""
    from reglab.output import Col, print_json, table

    with api(api_url, api_key) as client:
        items: Any = client.datasets()
    if output == "json":
        print_json({"items": items})
        return
    rows = [
        (d.get("id") or "—", d["name"], d.get("source", "builtin"), d["task"],
         "×".join(str(n) for n in d["shape"]) if d.get("shape") else d.get("size") or "any")
        for d in items
    ]  # fmt: skip
    table([Col("id", whole=True), "name", "source", "task", "shape / size"], rows, fmt=output)


@datasets.command()
def show(
    dataset_id: Id,
    output: Output = "table",
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """One uploaded dataset."""
    from reglab.output import print_json, table

    with api(api_url, api_key) as client:
        d = client.dataset(_resolve(client, dataset_id))
    if output == "json":
        print_json(d)
        return
    table(["field", "value"], _rows(d), fmt=output)


@datasets.command()
def rm(
    dataset_id: Id,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Remove an uploaded dataset (refused while a queued or running experiment uses it)."""
    from reglab.output import say

    with api(api_url, api_key) as client:
        ident = _resolve(client, dataset_id)
        client.delete_dataset(ident)
    say(f"removed dataset {ident}")
