"""Per-process worker state: settings, the database engine, the artifact store, a worker id.

Made on first use in the process that runs tasks (and remade after a fork), never at import time.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from service.db.session import make_engine, make_sessionmaker
from service.settings import Settings, get_settings
from worker.artifacts import ArtifactStore, open_store


@dataclass
class WorkerContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ArtifactStore
    worker_id: str
    scratch: Path
    threads: int | None


_ctx: WorkerContext | None = None


def make_context(settings: Settings, worker_id: str | None = None) -> WorkerContext:
    """``worker_id`` is given to a job's child process: it writes under the lease its worker
    holds (and its connections carry that worker's name)."""
    # unique per process: a restarted worker never mistakes an old lease for its own
    worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    engine = make_engine(settings.database_url, **_named_connections(settings, worker_id))
    return WorkerContext(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        store=open_store(settings.artifacts),
        worker_id=worker_id,
        scratch=Path(settings.scratch_dir).resolve(),
        threads=settings.worker_threads,
    )


def _named_connections(settings: Settings, worker_id: str) -> dict:
    """On PostgreSQL the worker's connections carry its id as ``application_name``, so
    ``pg_stat_activity`` (and a trigger, as the fault tests' audit does) can tell which worker
    made a write; the server truncates it to 63 bytes."""
    if make_url(settings.database_url).get_backend_name() != "postgresql":
        return {}
    # A worker frozen mid-transaction (SIGSTOP, a VM pause) would hold its row lock for ever and
    # the reconciler (which skips locked rows) could never hand the run to another worker: the
    # server ends such a transaction once it idles for half a lease. Worker transactions are short.
    idle_ms = max(1000, int(settings.lease_seconds * 500))
    return {
        "connect_args": {
            "application_name": worker_id[:63],
            "options": f"-c idle_in_transaction_session_timeout={idle_ms}",
        }
    }


def get_context() -> WorkerContext:
    global _ctx
    if _ctx is None:
        _ctx = make_context(get_settings())
    return _ctx


def set_context(ctx: WorkerContext | None) -> None:
    global _ctx
    _ctx = ctx


def reset_context() -> None:
    global _ctx
    if _ctx is not None:
        _ctx.engine.dispose(close=False)
    _ctx = None
