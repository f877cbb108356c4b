"""Live workers and the queues they consume (``worker_heartbeats``).

Each worker process renews its row every ``HEARTBEAT_S`` seconds (``worker.celery_app``) and
deletes it when it shuts down; a row not renewed for ``ALIVE_S`` belongs to a worker that died
or froze. The reconciler counts each queue's consumers from it: a queued run on a queue nobody
consumes says so (``waiting_reason``), and its message is not sent again while that lasts.
A heartbeat table rather than Celery's ``inspect``: a solo-pool worker busy with a run cannot
answer a broadcast, and the embedded filesystem broker has no remote control at all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from service.db.clock import db_now
from service.db.models import WorkerHeartbeat

HEARTBEAT_S = 5.0
ALIVE_S = 30.0
WAITING = "waiting for a worker on queue"


def beat(session: Session, worker: str, queues: Iterable[str]) -> None:
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(WorkerHeartbeat).values(
        worker=worker, queues=",".join(sorted(set(queues))), seen_at=db_now()
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["worker"],
            set_={"queues": stmt.excluded.queues, "seen_at": stmt.excluded.seen_at},
        )
    )


def forget(session: Session, worker: str) -> None:
    session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.worker == worker))


def consumers(session: Session) -> Counter[str]:
    """Live workers per queue name (rows renewed within ``ALIVE_S`` by the database's clock,
    which also stamped them: a worker's own clock plays no part)."""
    since = db_now(-ALIVE_S)
    rows = session.scalars(select(WorkerHeartbeat.queues).where(WorkerHeartbeat.seen_at >= since))
    return Counter(q for queues in rows for q in queues.split(",") if q)


def waiting_reason(queue: str, live: Counter[str]) -> str:
    others = ", ".join(f"{q}: {n}" for q, n in sorted(live.items())) or "none"
    return f"{WAITING} {queue} (0 consumers; live workers by queue: {others})"
