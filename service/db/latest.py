"""The latest value of each metric per experiment (``metric_latest``): kept up to date when a
worker records an epoch, and read to filter and sort ``GET /v1/experiments`` by a metric
(``service.db.search`` builds those queries).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from service.db.models import MetricLatest

#: ``(experiment_id, key, step, value)`` rows from four array literals bound as text
#: (``as_arrays``): joined in C, where psycopg's array dumper spent a fifth of an epoch's write
PG_UNNEST = "SELECT * FROM unnest(%s::varchar[], %s::varchar[], %s::integer[], %s::float8[])"


def upsert_from(rows: str) -> str:
    """The upsert of the newest values from ``rows`` (SQL: a query or ``VALUES`` of
    ``(experiment_id, key, step, value)``, at most one per experiment and key): a row replaces a
    value of the same or an older step only. ``jobs.record_epochs`` runs it in the statement
    that stores the points on PostgreSQL."""
    return (
        f"INSERT INTO metric_latest (experiment_id, key, step, value) {rows}"
        " ON CONFLICT (experiment_id, key) DO UPDATE SET step = excluded.step,"
        " value = excluded.value WHERE metric_latest.step <= excluded.step"
    )


#: ``upsert_rows`` by dialect, one statement for all the rows
_PG_UPSERT = upsert_from(PG_UNNEST)
_SQLITE_UPSERT = upsert_from("VALUES (?, ?, ?, ?)")


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def as_array(texts: Sequence[str]) -> str:
    """``texts`` as one PostgreSQL array literal (a ``varchar[]`` parameter)."""
    return "{" + ",".join(map(_quoted, texts)) + "}"


def as_arrays(rows: Sequence[tuple[str, str, int, float]]) -> tuple[str, ...]:
    """``(experiment_id, key, step, value)`` rows (at least one) as one PostgreSQL array
    literal per column (strings quoted and escaped, values finite): the parameters of a
    ``PG_UNNEST`` statement. Each distinct id and key is quoted once (a pack's epoch repeats
    64 ids and 16 keys a thousand times)."""
    ids, keys, steps, values = zip(*rows, strict=True)
    quoted = {text: _quoted(text) for text in {*ids, *keys}}.__getitem__
    return (
        "{" + ",".join(map(quoted, ids)) + "}",
        "{" + ",".join(map(quoted, keys)) + "}",
        "{" + ",".join(map(str, map(int, steps))) + "}",
        "{" + ",".join(map(repr, map(float, values))) + "}",
    )


def upsert_rows(conn: Connection, rows: Sequence[tuple[str, str, int, float]]) -> None:
    """Record each ``(experiment_id, key, step, value)`` (finite values) as the latest unless a
    later step is already there (a retried or resumed epoch never moves a value back in time)."""
    newest: dict[tuple[str, str], tuple[str, str, int, float]] = {}
    for row in rows:  # one row per (experiment, key), its newest step: a statement may not
        at = row[:2]  # update a row twice
        if at not in newest or newest[at][2] <= row[2]:
            newest[at] = row
    if not newest:
        return
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(_PG_UPSERT, as_arrays(list(newest.values())))
    else:
        conn.exec_driver_sql(_SQLITE_UPSERT, list(newest.values()))


def upsert(session: Session, experiment_id: str, step: int, metrics: Mapping[str, float]) -> None:
    """``upsert_rows`` for one experiment's ``metrics`` of ``step``."""
    rows = [
        (experiment_id, k, step, value)
        for k, value in ((k, float(v)) for k, v in metrics.items())
        if math.isfinite(value)
    ]
    upsert_rows(session.connection(), rows)


def latest(session: Session, experiment_ids: Sequence[str]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {i: {} for i in experiment_ids}
    if experiment_ids:
        stmt = select(MetricLatest.experiment_id, MetricLatest.key, MetricLatest.value).where(
            MetricLatest.experiment_id.in_(list(experiment_ids))
        )
        for eid, key, value in session.execute(stmt):
            out[eid][key] = value
    return out
