"""What was run, as rows that an index can answer: ``experiment_params`` holds one
``(experiment_id, path, num_value, str_value)`` row per scalar of the spec, written with the
experiment (``experiments.create``), so ``filter=params.model.name=mlp and test_acc>0.9``
is two index lookups instead of a JSON scan of every spec.

Paths are the spec's field paths, dotted, except that ``regularizers`` (a list) is keyed by each
entry's name: ``{"regularizers": [{"name": "l2", "strength": 1e-3}]}`` gives
``regularizers.l2.strength = 0.001`` and ``regularizers = "l2"`` (one row per entry, so
``params.regularizers=dropout`` finds runs that use dropout). Numbers (booleans as 1/0) go in
``num_value``; text, booleans (``true``/``false``) and lists of scalars (compact JSON, e.g.
``[100,100]``) in ``str_value``. Nulls are left out: a clause on a missing value never matches.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from service.db.models import ExperimentParam

MAX_PATH = 200
MAX_TEXT = 200


def _scalar(path: str, value: Any) -> Iterator[tuple[str, float | None, str | None]]:
    if value is None or len(path) > MAX_PATH:
        return
    if isinstance(value, bool):
        yield path, float(value), "true" if value else "false"
    elif isinstance(value, int | float):
        number = float(value)
        if math.isfinite(number):
            yield path, number, None
    elif isinstance(value, str):
        yield path, None, value[:MAX_TEXT]
    elif isinstance(value, list) and all(
        v is None or isinstance(v, bool | int | float | str) for v in value
    ):
        yield path, None, json.dumps(value, separators=(",", ":"))[:MAX_TEXT]


def flatten(
    spec: Mapping[str, Any], prefix: str = ""
) -> Iterator[tuple[str, float | None, str | None]]:
    """``(path, num_value, str_value)`` for every scalar of ``spec`` (see the module doc)."""
    for key, value in spec.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            yield from flatten(value, path)
        elif path == "regularizers" and isinstance(value, list):
            for entry in value:
                if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
                    continue
                yield from _scalar(path, entry["name"])
                rest = {k: v for k, v in entry.items() if k != "name"}
                yield from flatten(rest, f"{path}.{entry['name']}")
        else:
            yield from _scalar(path, value)


def rows(experiment_id: str, spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {"experiment_id": experiment_id, "path": p, "num_value": n, "str_value": s}
        for p, n, s in flatten(spec)
    ]


def record(session: Session, experiment_id: str, spec: Mapping[str, Any]) -> None:
    """Write the rows of one experiment (in the caller's transaction)."""
    values = rows(experiment_id, spec)
    if values:
        session.execute(insert(ExperimentParam), values)
