"""Engines and session factories, made per process (API lifespan, Celery worker_process_init).

Pool sizing follows from how the API uses connections. A sync route runs in one of AnyIO's
``API_THREADS`` worker threads and its session keeps a connection checked out until the
request's dependencies exit, which is after FastAPI has validated the response, in another
thread of the same limiter. A pool smaller than the limiter therefore deadlocks under load:
every thread waits for a connection while the sessions holding them wait for a thread (50
clients froze the API on SQLite, then answered 500 at the pool timeout). So:

* SQLite's pool never blocks (``max_overflow=-1``; a connection is an open file), keeping
  ``API_THREADS`` of them for reuse; WAL and a busy timeout let the API and a worker write.
* PostgreSQL keeps ``API_THREADS`` connections plus an overflow, so threads cannot all wait
  while connections are parked; a checkout that still waits past ``POOL_TIMEOUT_S`` fails
  fast (the API answers 503 with Retry-After) instead of freezing for the default 30 s.

Workers use the same engines: a pool only opens the connections it is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from service.db import outage

#: AnyIO's default thread limiter (the threads sync routes run in)
API_THREADS = 40
PG_OVERFLOW = 20
POOL_TIMEOUT_S = 10.0


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` with the pool above (``kwargs`` override it)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs = {"pool_size": API_THREADS, "max_overflow": -1, **kwargs}
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # WAL's recommended level: a commit survives a crash of the process (not of the
            # machine) without an fsync each; metric epochs commit many times a second.
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    pool = {"pool_size": API_THREADS, "max_overflow": PG_OVERFLOW, "pool_timeout": POOL_TIMEOUT_S}
    engine = create_engine(url, pool_pre_ping=True, **{**pool, **kwargs})
    outage.install(engine)  # a read-only database: its connections are replaced, not kept
    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)
