"""The latest value of each metric per experiment (``metric_latest``): kept up to date when a
worker records an epoch, and read to filter and sort ``GET /v1/experiments`` by a metric.

The filter clauses come parsed (``service.sweeps.filters``); here they become SQLAlchemy
expressions whose keys and values are bound parameters, never SQL text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from service.db.models import Experiment, MetricLatest
from service.sweeps.filters import Clause, Sort


def upsert(session: Session, experiment_id: str, step: int, metrics: Mapping[str, float]) -> None:
    """Record ``metrics`` of ``step`` as the latest unless a later step is already there (a
    retried or resumed epoch never moves a value back in time)."""
    rows = [
        {"experiment_id": experiment_id, "key": k, "step": step, "value": float(v)}
        for k, v in metrics.items()
        if math.isfinite(float(v))
    ]
    if not rows:
        return
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(MetricLatest).values(rows)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["experiment_id", "key"],
            set_={"step": stmt.excluded.step, "value": stmt.excluded.value},
            where=MetricLatest.step <= stmt.excluded.step,
        )
    )


def latest(session: Session, experiment_ids: Sequence[str]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {i: {} for i in experiment_ids}
    if experiment_ids:
        stmt = select(MetricLatest.experiment_id, MetricLatest.key, MetricLatest.value).where(
            MetricLatest.experiment_id.in_(list(experiment_ids))
        )
        for eid, key, value in session.execute(stmt):
            out[eid][key] = value
    return out


_COMPARE = {
    "=": lambda c, v: c == v,
    "!=": lambda c, v: c != v,
    "<": lambda c, v: c < v,
    "<=": lambda c, v: c <= v,
    ">": lambda c, v: c > v,
    ">=": lambda c, v: c >= v,
}
_FIELDS = {
    "status": Experiment.status,
    "name": Experiment.name,
    "queue": Experiment.queue,
    "sweep_id": Experiment.sweep_id,
}


def where(clauses: Sequence[Clause]) -> list[ColumnElement[bool]]:
    out = []
    for c in clauses:
        compare = _COMPARE[c.op]  # the parser admits only these operators
        if c.kind == "field":
            out.append(compare(_FIELDS[c.key], c.value))
        else:
            out.append(
                exists().where(
                    and_(
                        MetricLatest.experiment_id == Experiment.id,
                        MetricLatest.key == c.key,
                        compare(MetricLatest.value, c.value),
                    )
                )
            )
    return out


def order_by(sort: Sort) -> list[Any]:
    """The ORDER BY of a sort, missing metric values last, ties by newest then id."""
    if sort.kind == "field":
        column: Any = {
            "created_at": Experiment.created_at,
            "name": Experiment.name,
            "status": Experiment.status,
        }[sort.key]
        head = [column.desc() if sort.descending else column.asc()]
    else:
        value = (
            select(MetricLatest.value)
            .where(MetricLatest.experiment_id == Experiment.id, MetricLatest.key == sort.key)
            .scalar_subquery()
        )
        head = [value.is_(None), value.desc() if sort.descending else value.asc()]
    return [*head, Experiment.created_at.desc(), Experiment.id.desc()]
