"""Worker-side state transitions of an experiment row; the database is the source of truth.

A worker owns a running row through its lease (``lease_owner`` + ``lease_expires_at``). Every
write here is guarded by that ownership, so a worker that was paused past its lease, or whose
message was delivered twice, can never overwrite the work of the worker that took over.

Functions take a Session and never commit: the caller owns the (short) transaction.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Connection,
    CursorResult,
    Float,
    and_,
    bindparam,
    case,
    delete,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from service.db import latest, workers
from service.db.clock import db_now
from service.db.models import TERMINAL, Checkpoint, Experiment, new_id, utcnow


def _rowcount(result: Any) -> int:
    """Rows an UPDATE matched (``Session.execute`` is typed as a plain Result)."""
    return cast(CursorResult[Any], result).rowcount


def _owned(experiment_id: str, worker_id: str):
    return and_(
        Experiment.id == experiment_id,
        Experiment.status == "running",
        Experiment.lease_owner == worker_id,
    )


def claim(
    session: Session, experiment_id: str, worker_id: str, lease_s: float
) -> Experiment | None:
    """queued → running (or take over a running row whose lease expired), as one conditional
    UPDATE that also counts the attempt; None when the row is not ours to run. Lease times are
    the database's clock (``db_now``), never this worker's."""
    result = session.execute(
        update(Experiment)
        .where(
            Experiment.id == experiment_id,
            Experiment.cancel_requested.is_(False),
            Experiment.attempts < Experiment.max_attempts,
            or_(
                Experiment.status == "queued",
                and_(Experiment.status == "running", Experiment.lease_expires_at < db_now()),
            ),
        )
        .values(
            status="running",
            attempts=Experiment.attempts + 1,
            lease_owner=worker_id,
            lease_expires_at=db_now(lease_s),
            started_at=db_now(),
            error=None,
        )
        .execution_options(synchronize_session=False)
    )
    if _rowcount(result) != 1:
        return None
    return session.get(Experiment, experiment_id, populate_existing=True)


def settle_unclaimable(session: Session, experiment_id: str) -> str | None:
    """After a failed claim: end rows that can never be claimed (attempts used up, or a cancel
    that arrived while queued); returns the new status, or None when nothing was changed."""
    row = session.get(Experiment, experiment_id, populate_existing=True)
    if row is None or row.status in TERMINAL:
        return None
    lease_live = row.status == "running" and (
        row.lease_expires_at is not None
        and row.lease_expires_at >= session.execute(select(db_now())).scalar_one()
    )
    if lease_live:
        return None  # another worker is on it
    if row.cancel_requested:
        _end(row, "cancelled", None, "cancelled before it started")
    elif row.attempts >= row.max_attempts:
        _end(row, "failed", None, _gave_up(row))
    else:
        return None
    return row.status


def _gave_up(row: Experiment) -> str:
    last = f" (last error: {row.error})" if row.error else ""
    return (
        f"gave up after {row.attempts} attempt(s) of {row.max_attempts}: the worker running it "
        f"stopped without finishing{last}"
    )


def _end(row: Experiment, status: str, summary: dict | None, error: str | None) -> None:
    row.status = status
    row.finished_at = utcnow()
    row.lease_owner = None
    row.lease_expires_at = None
    if summary is not None:
        row.summary = summary
    row.error = error


def heartbeat(session: Session, experiment_id: str, worker_id: str, lease_s: float) -> bool:
    """Extend our lease; False when it is no longer ours (the worker must stop at once)."""
    result = session.execute(
        update(Experiment)
        .where(_owned(experiment_id, worker_id))
        .values(lease_expires_at=db_now(lease_s))
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


@dataclass
class Control:
    owned: bool
    cancel_requested: bool


def poll(session: Session, experiment_id: str, worker_id: str) -> Control:
    """Whether we still hold the lease and whether a cancel was asked for (one cheap read)."""
    row = session.execute(
        select(Experiment.status, Experiment.lease_owner, Experiment.cancel_requested).where(
            Experiment.id == experiment_id
        )
    ).one_or_none()
    if row is None:
        return Control(owned=False, cancel_requested=True)
    return Control(
        owned=row.status == "running" and row.lease_owner == worker_id,
        cancel_requested=bool(row.cancel_requested),
    )


def cancel_requested(session: Session, experiment_id: str) -> bool:
    flag = session.scalar(select(Experiment.cancel_requested).where(Experiment.id == experiment_id))
    return bool(flag)


def _insert(session: Session):
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


@dataclass(frozen=True)
class EpochPoints:
    """One experiment's metrics of one step, as the reporter hands them over."""

    experiment_id: str
    step: int
    metrics: Mapping[str, float]


# Built once: SQLAlchemy caches each statement's compiled form per dialect, so an epoch costs
# binding its rows, not building and compiling SQL (the cost that capped the old path at ~1.7k
# points/s). ``ids`` expands to the pack's members. SQLite's renewal; PostgreSQL's is the same
# UPDATE inside ``_PG_EPOCH``.
_RENEW = (
    update(Experiment)
    .where(
        Experiment.id.in_(bindparam("ids", expanding=True)),
        Experiment.status == "running",
        Experiment.lease_owner == bindparam("worker_id"),
    )
    .values(
        last_epoch=bindparam("step"), lease_expires_at=db_now(bindparam("lease_s", type_=Float))
    )
    .returning(Experiment.id)
)
#: One step's lease renewals and points (at most one per experiment and key), by dialect, for
#: all the rows at once, no SQL built, compiled or bound per epoch.
#:
#: PostgreSQL: ONE statement, one round trip: it renews the leases (``_RENEW``'s UPDATE, its
#: lease time ``db_now(lease_s)`` spelled out), keeps the points of the experiments it renewed
#: (the only check that they exist and are ours: ``metrics`` has no foreign key, 0008), stores
#: them in ``metrics`` (a point already there is skipped) and upserts them into
#: ``metric_latest``, and returns the renewed ids. The points are four array literals
#: (``latest.as_arrays``), unnested in C. COPY was measured too: it cannot skip a retried
#: epoch's points, and through a staging table it was slower.
#: SQLite: ``_RENEW``, the driver's executemany of the precompiled INSERT of the renewed
#: experiments' points, then ``latest.upsert_rows``.
_PG_EPOCH = (
    "WITH renewed AS (UPDATE experiments SET last_epoch = %s,"
    " lease_expires_at = now() + make_interval(secs => %s)"
    " WHERE id = ANY(%s::varchar[]) AND status = 'running' AND lease_owner = %s RETURNING id),"
    " points AS (" + latest.PG_UNNEST + " AS p (experiment_id, key, step, value)"
    " WHERE p.experiment_id IN (SELECT id FROM renewed)),"
    " stored AS (INSERT INTO metrics (experiment_id, key, step, value) SELECT * FROM points"
    " ON CONFLICT (experiment_id, key, step) DO NOTHING),"
    " newest AS (" + latest.upsert_from("SELECT * FROM points") + ")"
    " SELECT id FROM renewed"
)  # fmt: skip
_SQLITE_METRICS = (
    "INSERT INTO metrics (experiment_id, key, step, value) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (experiment_id, key, step) DO NOTHING"
)

_NO_ROWS = ("{}", "{}", "{}", "{}")


def _finite_rows(
    members: Mapping[str, Mapping[str, float]], step: int, ids: Collection[str]
) -> list[tuple[str, str, int, float]]:
    """The ``(experiment_id, key, step, value)`` rows of ``ids``' members. NaN cannot be stored
    on SQLite (it becomes NULL); a missing point reads better than a fake one."""
    return [
        (eid, key, step, value)
        for eid, metrics in members.items()
        if eid in ids
        for key, value in ((k, float(v)) for k, v in metrics.items())
        if math.isfinite(value)
    ]


def _write_step(
    conn: Connection,
    worker_id: str,
    step: int,
    members: Mapping[str, Mapping[str, float]],
    lease_s: float,
) -> set[str]:
    """Renew the leases of one step's members and store the points of those still ours; returns
    them."""
    ids = sorted(members)
    if conn.dialect.name == "postgresql":
        rows = _finite_rows(members, step, members)
        arrays = latest.as_arrays(rows) if rows else _NO_ROWS
        params = (step, float(lease_s), latest.as_array(ids), worker_id, *arrays)
        return set(conn.exec_driver_sql(_PG_EPOCH, params).scalars())
    result = conn.execute(
        _RENEW, {"ids": ids, "worker_id": worker_id, "step": step, "lease_s": lease_s}
    )
    ours = set(result.scalars())
    rows = _finite_rows(members, step, ours)
    if rows:
        conn.exec_driver_sql(_SQLITE_METRICS, rows)
        latest.upsert_rows(conn, rows)
    return ours


def record_epochs(
    session: Session, worker_id: str, epochs: Sequence[EpochPoints], lease_s: float
) -> set[str]:
    """Store the metrics of many experiments' epochs (a pack's members) in the caller's one
    transaction and renew their leases. Returns the experiments whose lease is ours: only their
    points are written; the others' are dropped (their lease was lost). A retried epoch adds
    nothing (unique on experiment, key, step) and never moves ``metric_latest`` back in time.
    Per step, in order, the renewal (the lease check) and the write of its points: one
    statement on PostgreSQL (``_PG_EPOCH``), ``_RENEW`` then the points on SQLite; a pack's
    epoch, or a lone run's, is one step."""
    by_step: dict[int, dict[str, Mapping[str, float]]] = defaultdict(dict)
    for e in epochs:  # one point set per (experiment, step): a repeated one is merged
        members = by_step[e.step]
        seen = members.get(e.experiment_id)
        members[e.experiment_id] = e.metrics if seen is None else {**seen, **e.metrics}
    if not by_step:
        return set()
    conn = session.connection()
    owned: set[str] = set()
    for step in sorted(by_step):
        owned |= _write_step(conn, worker_id, step, by_step[step], lease_s)
    return owned


def record_epoch(
    session: Session,
    experiment_id: str,
    worker_id: str,
    step: int,
    metrics: Mapping[str, float],
    lease_s: float,
) -> bool:
    """One experiment's epoch (``record_epochs`` of one); False, writing nothing, when the
    lease is no longer ours."""
    points = EpochPoints(experiment_id, step, metrics)
    return experiment_id in record_epochs(session, worker_id, [points], lease_s)


def record_checkpoint(
    session: Session,
    experiment_id: str,
    worker_id: str,
    *,
    kind: str,
    epoch: int,
    uri: str,
    state_uri: str,
    sidecar_uri: str,
    size: int,
    sha256: str,
) -> list[str] | None:
    """Record a checkpoint whose files are already in the artifact store. Only the newest of
    each kind is kept: returns the artifact keys of the rows it replaced (the caller deletes
    them after commit), or None, recording nothing, when the lease is no longer ours."""
    owned = session.execute(
        select(Experiment.id).where(_owned(experiment_id, worker_id)).with_for_update()
    ).first()
    if owned is None:
        return None
    old = session.scalars(
        select(Checkpoint).where(
            Checkpoint.experiment_id == experiment_id,
            Checkpoint.kind == kind,
            Checkpoint.epoch != epoch,
        )
    ).all()
    stale_keys = [k for c in old for k in (c.uri, c.state_uri, c.sidecar_uri) if k]
    if old:
        session.execute(
            delete(Checkpoint).where(Checkpoint.id.in_([c.id for c in old])),
            execution_options={"synchronize_session": False},
        )
    values = {
        "id": new_id(),
        "experiment_id": experiment_id,
        "kind": kind,
        "epoch": epoch,
        "uri": uri,
        "state_uri": state_uri,
        "sidecar_uri": sidecar_uri,
        "size": size,
        "sha256": sha256,
        "created_at": utcnow(),
    }
    insert = _insert(session)
    session.execute(
        insert(Checkpoint)
        .values(values)
        .on_conflict_do_update(
            index_elements=["experiment_id", "kind", "epoch"],
            set_={k: values[k] for k in ("uri", "state_uri", "sidecar_uri", "size", "sha256")},
        )
    )
    return [k for k in stale_keys if k not in (uri, state_uri, sidecar_uri)]


def latest_checkpoint(
    session: Session, experiment_id: str, kind: str = "last"
) -> Checkpoint | None:
    return session.scalars(
        select(Checkpoint)
        .where(Checkpoint.experiment_id == experiment_id, Checkpoint.kind == kind)
        .order_by(Checkpoint.epoch.desc())
        .limit(1)
    ).first()


def finish(
    session: Session,
    experiment_id: str,
    worker_id: str,
    status: str,
    summary: dict | None = None,
    error: str | None = None,
) -> bool:
    """running → succeeded/failed/cancelled; False when the lease is no longer ours."""
    assert status in TERMINAL, status
    values: dict = {
        "status": status,
        "finished_at": db_now(),  # the clock its started_at was taken from (``claim``)
        "lease_owner": None,
        "lease_expires_at": None,
        "error": error,
    }
    if summary is not None:
        values["summary"] = summary
    result = session.execute(
        update(Experiment)
        .where(_owned(experiment_id, worker_id))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


def release(session: Session, experiment_id: str, worker_id: str) -> bool:
    """Give a running row back to the queue because its worker is shutting down: queued again,
    and the attempt not counted (nothing went wrong). The reconciler re-enqueues it; it resumes
    from its last checkpoint. A row whose cancel was asked for ends ``cancelled`` instead.
    False when the lease is no longer ours."""
    cancelled = Experiment.cancel_requested.is_(True)
    result = session.execute(
        update(Experiment)
        .where(_owned(experiment_id, worker_id))
        .values(
            status=case((cancelled, "cancelled"), else_="queued"),
            finished_at=case((cancelled, db_now()), else_=None),
            attempts=Experiment.attempts - 1,
            lease_owner=None,
            lease_expires_at=None,
            enqueued_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


def requeue_expired(session: Session) -> list[str]:
    """Running rows whose lease expired (their worker died or hung) by the database's clock:
    back to ``queued`` for the caller to re-enqueue, or ended when attempts are used up or a
    cancel was asked for. Returns the ids put back in the queue."""
    rows = session.scalars(
        select(Experiment)
        .where(Experiment.status == "running", Experiment.lease_expires_at < db_now())
        .with_for_update(skip_locked=True)
    ).all()
    requeued = []
    for row in rows:
        if row.cancel_requested:
            _end(row, "cancelled", None, "cancelled while its worker was gone")
        elif row.attempts >= row.max_attempts:
            _end(row, "failed", None, _gave_up(row))
        else:
            row.status = "queued"
            row.lease_owner = None
            row.lease_expires_at = None
            row.enqueued_at = None
            requeued.append(row.id)
    return requeued


def stale_queued(
    session: Session,
    older_than: datetime,
    created_before: datetime | None = None,
    idle_queues: Collection[str] = (),
) -> list[str]:
    """Queued rows to (re-)enqueue: never enqueued (the API's send failed, or a requeue), or
    enqueued before ``older_than`` (the broker may have lost the message), except on
    ``idle_queues`` (nobody consumes them: another copy of the message would only pile up
    behind the first). ``created_before`` leaves alone rows the API is enqueueing right now."""
    created_before = created_before or utcnow()
    resend = Experiment.enqueued_at < older_than
    if idle_queues:
        resend = and_(resend, Experiment.queue.not_in(list(idle_queues)))
    return list(
        session.scalars(
            select(Experiment.id).where(
                Experiment.status == "queued",
                Experiment.cancel_requested.is_(False),
                or_(
                    and_(Experiment.enqueued_at.is_(None), Experiment.created_at < created_before),
                    resend,
                ),
            )
        ).all()
    )


def note_waiting(session: Session, live: Counter[str]) -> set[str]:
    """Say on each queued row whose queue no live worker consumes why it waits (in ``error``,
    unless that holds an earlier attempt's failure), and clear the note once one does.
    ``live``: consumers per queue (``workers.consumers``). Returns the queues nobody consumes."""
    queued = Experiment.status == "queued"
    noted = Experiment.error.startswith(workers.WAITING, autoescape=True)
    queues = set(session.scalars(select(Experiment.queue).where(queued).distinct()))
    idle = {q for q in queues if live[q] == 0}
    for queue in sorted(idle):
        session.execute(
            update(Experiment)
            .where(queued, Experiment.queue == queue, or_(Experiment.error.is_(None), noted))
            .values(error=workers.waiting_reason(queue, live))
            .execution_options(synchronize_session=False)
        )
    if queues - idle:
        session.execute(
            update(Experiment)
            .where(queued, Experiment.queue.in_(sorted(queues - idle)), noted)
            .values(error=None)
            .execution_options(synchronize_session=False)
        )
    return idle


def mark_enqueued(session: Session, experiment_id: str, when: datetime | None = None) -> None:
    session.execute(
        update(Experiment)
        .where(Experiment.id == experiment_id, Experiment.status == "queued")
        .values(enqueued_at=when or utcnow())
        .execution_options(synchronize_session=False)
    )
