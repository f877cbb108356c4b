"""Run log lines of an experiment: appended by the worker that runs it, read by the API.

Each experiment numbers its lines 1, 2, 3, ... (``seq``) across all its attempts. A writer first
checks it may write (``_writable``, holding a share lock on the experiment row on PostgreSQL, so
no claim slips in between), then takes its seqs by an upsert of the experiment's
``run_log_seqs`` row, whose lock orders the writers' transactions: seqs never repeat and commit
in order, so a reader that saw seq N never later finds a line below N appear. Nothing here
updates the experiment row itself (the lease's writes stay the lease holder's alone). Only the
newest ``max_lines`` lines are kept. Functions take a Session and never commit: the caller owns
the (short) transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import and_, delete, insert, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from service.db.models import Experiment, RunLog, RunLogSeq, utcnow

#: longest message stored; longer ones are cut (a log line is not a place for a dump)
MAX_MESSAGE_CHARS = 4000


@dataclass(frozen=True)
class LogLine:
    level: str
    logger: str
    message: str
    created_at: datetime | None = None


def _writable(experiment_id: str, worker_id: str, attempt: int):
    """The worker of ``attempt`` may write while it holds the lease, and after it let go of it
    (its own outcome and release messages come right after the write that ended the lease) as
    long as no later attempt has claimed the row: a claim counts the attempt and sets the
    lease owner, so a stale worker can never append to a newer attempt's lines. A release
    gives the attempt back (``attempts - 1``)."""
    return and_(
        Experiment.id == experiment_id,
        or_(
            and_(Experiment.lease_owner == worker_id, Experiment.attempts == attempt),
            and_(Experiment.lease_owner.is_(None), Experiment.attempts.in_([attempt, attempt - 1])),
        ),
    )


def append(
    session: Session,
    experiment_id: str,
    worker_id: str,
    attempt: int,
    lines: Sequence[LogLine],
    max_lines: int,
) -> bool:
    """Append ``lines`` in order and drop all but the newest ``max_lines``; False, writing
    nothing, when this worker's attempt may no longer write (see ``_writable``)."""
    if not lines:
        return True
    allowed = session.execute(
        select(Experiment.id)
        .where(_writable(experiment_id, worker_id, attempt))
        .with_for_update(read=True)
    ).first()
    if allowed is None:
        return False
    n = len(lines)
    upsert = _insert(session)(RunLogSeq).values(experiment_id=experiment_id, last_seq=n)
    last = session.execute(
        upsert.on_conflict_do_update(
            index_elements=["experiment_id"], set_={"last_seq": RunLogSeq.last_seq + n}
        ).returning(RunLogSeq.last_seq)
    ).scalar_one()
    first = last - n + 1
    now = utcnow()
    rows = [
        {
            "experiment_id": experiment_id,
            "seq": first + i,
            "created_at": line.created_at or now,
            "level": line.level[:16],
            "logger": line.logger[:200],
            "attempt": attempt,
            "message": line.message[:MAX_MESSAGE_CHARS],
        }
        for i, line in enumerate(lines)
        if first + i > last - max_lines
    ]
    if rows:
        session.execute(insert(RunLog), rows)
    if last > max_lines:  # older lines fall out of the window
        session.execute(
            delete(RunLog)
            .where(RunLog.experiment_id == experiment_id, RunLog.seq <= last - max_lines)
            .execution_options(synchronize_session=False)
        )
    return True


def _insert(session: Session):
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def since(session: Session, experiment_id: str, after: int, limit: int) -> list[RunLog]:
    """Up to ``limit`` lines with seq > ``after``, oldest first."""
    return list(
        session.scalars(
            select(RunLog)
            .where(RunLog.experiment_id == experiment_id, RunLog.seq > after)
            .order_by(RunLog.seq)
            .limit(limit)
        ).all()
    )


class State(NamedTuple):
    status: str
    last_seq: int
    finished_at: datetime | None


def state(session: Session, experiment_id: str) -> State | None:
    """The experiment's status, newest log seq (0 before any) and end time: one cheap read."""
    row = session.execute(
        select(Experiment.status, RunLogSeq.last_seq, Experiment.finished_at)
        .outerjoin(RunLogSeq, RunLogSeq.experiment_id == Experiment.id)
        .where(Experiment.id == experiment_id)
    ).one_or_none()
    return State(row.status, row.last_seq or 0, row.finished_at) if row is not None else None
