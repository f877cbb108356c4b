"""Run log lines of an experiment: appended by the worker that runs it, read by the API.

Each experiment numbers its lines 1, 2, 3, ... (``seq``) across all its attempts; the newest
seq is ``experiments.log_seq``, bumped by the same UPDATE that checks the writer may write, so
seqs are assigned under the row lock and never repeat. Only the newest ``max_lines`` lines are
kept. Functions take a Session and never commit: the caller owns the (short) transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.orm import Session

from service.db.models import Experiment, RunLog, utcnow

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
    last = session.execute(
        update(Experiment)
        .where(_writable(experiment_id, worker_id, attempt))
        .values(log_seq=Experiment.log_seq + len(lines))
        .returning(Experiment.log_seq)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if last is None:
        return False
    first = last - len(lines) + 1
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
    log_seq: int
    finished_at: datetime | None


def state(session: Session, experiment_id: str) -> State | None:
    """The experiment's status, newest log seq and end time (one cheap read for a follower)."""
    row = session.execute(
        select(Experiment.status, Experiment.log_seq, Experiment.finished_at).where(
            Experiment.id == experiment_id
        )
    ).one_or_none()
    return State(row.status, row.log_seq, row.finished_at) if row is not None else None
