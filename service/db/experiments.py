"""API-side queries on experiments, metrics and checkpoints. Callers own the transaction."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, case, or_, select, update
from sqlalchemy.orm import Session, defer

from service.db import paging, params, search
from service.db.models import Checkpoint, Experiment, Metric, utcnow
from service.db.paging import CursorError, Page
from service.lttb import lttb
from service.sweeps.filters import Sort

__all__ = ["CursorError", "Page", "create", "list_page", "metrics"]


def create(
    session: Session,
    *,
    name: str,
    spec: dict,
    spec_hash: str,
    queue: str,
    total_epochs: int,
    max_attempts: int,
    owner: str | None = None,
    idempotency_key: str | None = None,
) -> Experiment:
    row = Experiment(
        name=name,
        spec=spec,
        spec_hash=spec_hash,
        queue=queue,
        status="queued",
        total_epochs=total_epochs,
        max_attempts=max_attempts,
        owner=owner,
        idempotency_key=idempotency_key,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    params.record(session, row.id, spec)
    return row


def owned_by(owner: str) -> ColumnElement[bool]:
    """Rows of ``owner``; the anonymous owner "" also has the rows stored with a NULL owner."""
    if owner:
        return Experiment.owner == owner
    return or_(Experiment.owner == "", Experiment.owner.is_(None))


def get(session: Session, experiment_id: str) -> Experiment | None:
    return session.get(Experiment, experiment_id)


def get_by_idempotency_key(session: Session, owner: str | None, key: str) -> Experiment | None:
    owner_clause = Experiment.owner.is_(None) if owner is None else Experiment.owner == owner
    stmt = select(Experiment).where(owner_clause, Experiment.idempotency_key == key)
    return session.scalars(stmt).first()


def mark_enqueued(session: Session, experiment_id: str) -> None:
    session.execute(
        update(Experiment).where(Experiment.id == experiment_id).values(enqueued_at=utcnow())
    )


def list_page(
    session: Session,
    *,
    status: str | None = None,
    name: str | None = None,
    owner: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    where: Sequence[ColumnElement[bool]] = (),
    sort: Sort | None = None,
    lean: bool = False,
) -> Page:
    """One page in the order of ``sort`` (newest first by default; ``service.db.search``);
    ``cursor`` continues after the last item of the previous page. ``where`` comes from
    ``service.db.search.where`` (the parsed filter)."""
    stmt = search.with_sort(select(Experiment).where(*where), sort)
    if lean:  # a list row needs no spec, environment or error text (the bulk of a row)
        stmt = stmt.options(defer(Experiment.spec), defer(Experiment.environment),
                            defer(Experiment.error))  # fmt: skip
    if status is not None:
        stmt = stmt.where(Experiment.status == status)
    if name is not None:
        stmt = stmt.where(Experiment.name == name)
    if owner is not None:
        stmt = stmt.where(owned_by(owner))
    return paging.page(session, stmt, search.sort_keys(sort), limit, cursor)


def request_cancel(session: Session, experiment_id: str) -> Experiment | None:
    """Queued rows end ``cancelled`` now; running rows get the flag the worker polls; ended rows
    are left as they are.

    One UPDATE decides by the status the row has when it is written (PostgreSQL re-reads a row
    another transaction changed before updating it). Two statements, one per status, would leave
    a gap in which a reconciler requeueing the row (running -> queued) made the cancel miss both.
    The flag is set on queued and running rows alike, so a row requeued just after this still
    carries it to the worker that claims it.
    """
    live = Experiment.status.in_(("queued", "running"))
    session.execute(
        update(Experiment)
        .where(Experiment.id == experiment_id, live)
        .values(
            status=case((Experiment.status == "queued", "cancelled"), else_=Experiment.status),
            finished_at=case(
                (Experiment.status == "queued", utcnow()), else_=Experiment.finished_at
            ),
            cancel_requested=True,
        )
        .execution_options(synchronize_session=False)
    )
    return session.get(Experiment, experiment_id, populate_existing=True)


def metric_keys(session: Session, experiment_id: str) -> list[str]:
    stmt = (
        select(Metric.key)
        .where(Metric.experiment_id == experiment_id)
        .distinct()
        .order_by(Metric.key)
    )
    return list(session.scalars(stmt))


def downsample(points: Sequence[tuple[int, float]], max_points: int) -> list[tuple[int, float]]:
    """At most ``max_points``, first and last kept, by LTTB (peaks survive, unlike even spacing)."""
    if max_points <= 0:
        return list(points)
    return lttb(points, max_points)


def metrics(
    session: Session,
    experiment_id: str,
    keys: Sequence[str] | None = None,
    max_points: int | None = None,
    since_step: int | None = None,
) -> dict[str, list[tuple[int, float]]]:
    """``{key: [(step, value), ...]}`` by step; every requested key appears, maybe empty.
    ``since_step`` keeps only the steps after it (a live view polls for what is new)."""
    stmt = select(Metric.key, Metric.step, Metric.value).where(
        Metric.experiment_id == experiment_id
    )
    if since_step is not None:
        stmt = stmt.where(Metric.step > since_step)
    if keys:
        stmt = stmt.where(Metric.key.in_(list(keys)))
    stmt = stmt.order_by(Metric.key, Metric.step)
    series: dict[str, list[tuple[int, float]]] = {k: [] for k in keys or ()}
    for key, step, value in session.execute(stmt):
        series.setdefault(key, []).append((step, value))
    if max_points:
        series = {k: downsample(v, max_points) for k, v in series.items()}
    return series


def checkpoints(session: Session, experiment_id: str) -> list[Checkpoint]:
    stmt = (
        select(Checkpoint)
        .where(Checkpoint.experiment_id == experiment_id)
        .order_by(Checkpoint.epoch, Checkpoint.kind)
    )
    return list(session.scalars(stmt))


def checkpoint(session: Session, experiment_id: str, checkpoint_id: str) -> Checkpoint | None:
    row = session.get(Checkpoint, checkpoint_id)
    return row if row is not None and row.experiment_id == experiment_id else None
