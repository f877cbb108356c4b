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

The worker waits both out (``worker.reporter.retry_db``); the API answers 503 with Retry-After
(``service.api.unavailable``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError, OperationalError

#: PostgreSQL's "cannot execute <statement> in a read-only transaction"
READ_ONLY_SQLSTATE = "25006"


def read_only(exc: BaseException) -> bool:
    """A write refused because the database is read-only."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    return getattr(orig, "sqlstate", None) == READ_ONLY_SQLSTATE


def unreachable(exc: BaseException) -> bool:
    """The database cannot take this statement now (gone away, or read-only); the same
    statement may succeed later."""
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
