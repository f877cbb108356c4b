"""Which database errors are an outage to wait out, as opposed to a bad statement.

* Unreachable: a connection refused, a server restarting, a connection cut mid-query
  (SQLAlchemy's ``OperationalError``, or any ``DBAPIError`` that invalidated its connection).
* Read-only: PostgreSQL refuses a write with SQLSTATE 25006 (``ReadOnlySqlTransaction``): a
  hot standby not yet promoted, or ``default_transaction_read_only`` switched on for the
  database. That setting is read when a connection starts, so a pooled connection opened while
  it was on stays read-only after it is switched off again. ``install`` therefore makes an
  engine treat 25006 as a disconnect: the connection (and the rest of the pool) is replaced,
  and the error arrives with ``connection_invalidated`` set, so the next try opens a fresh
  connection that sees the database as it is now.

* Full: PostgreSQL cannot extend a table or index file, SQLSTATE 53100 (``DiskFull``, "could
  not extend file ...: No space left on device"); the transaction is rolled back and the same
  statement succeeds once space is freed. psycopg raises it as an ``OperationalError`` (class
  53, insufficient resources), so it is waited out as an unreachable database is; only the
  messages name it (``describe``).

The worker waits all three out (``worker.reporter.retry_db``); the API answers 503 with Retry-After
(``service.api.unavailable``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError, OperationalError

#: PostgreSQL's "cannot execute <statement> in a read-only transaction"
READ_ONLY_SQLSTATE = "25006"


#: PostgreSQL's "could not extend file ...: No space left on device"
DISK_FULL_SQLSTATE = "53100"


def _sqlstate(exc: BaseException) -> str | None:
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    return getattr(orig, "sqlstate", None)


def read_only(exc: BaseException) -> bool:
    """A write refused because the database is read-only."""
    return _sqlstate(exc) == READ_ONLY_SQLSTATE


def describe(exc: BaseException) -> str:
    """What the database is, for an outage's messages: read-only, full or unreachable."""
    return {READ_ONLY_SQLSTATE: "read-only", DISK_FULL_SQLSTATE: "full"}.get(
        _sqlstate(exc) or "", "unreachable"
    )


def unreachable(exc: BaseException) -> bool:
    """The database cannot take this statement now (gone away, read-only or full: see the
    module's docstring); the same statement may succeed later."""
    return (
        isinstance(exc, OperationalError)
        or (isinstance(exc, DBAPIError) and exc.connection_invalidated)
        or read_only(exc)
    )


def install(engine: Engine) -> None:
    """Replace the connections of ``engine`` that hit a read-only error (see above)."""

    @event.listens_for(engine, "handle_error")
    def _read_only_is_a_disconnect(context: ExceptionContext) -> Any:
        if read_only(context.original_exception):
            context.is_disconnect = True
