"""The database's clock, for every time that one process writes and another compares.

A lease is written by the worker that holds it and judged by other workers (``jobs.claim``)
and by the reconciler (``jobs.requeue_expired``); a worker's liveness row likewise
(``workers``). Computed from each process's own wall clock, a worker whose clock is 10
minutes slow writes leases that are already expired for everyone else (its runs are taken over
while they run), and one 10 minutes fast writes leases that outlive it by 10 minutes and takes
over live ones. So those times are computed in the SQL statement itself, from the one clock
every process shares: ``db_now(seconds)`` is the database's current time plus ``seconds``.

* PostgreSQL: ``now()`` (the transaction's start, timezone-aware) plus an interval.
* SQLite: ``strftime`` of ``'now'`` (UTC) in the text form that ``models.UTCDateTime`` stores
  (``YYYY-MM-DD HH:MM:SS.ffffff``, no offset, compared as text), milliseconds from SQLite
  padded to microseconds. SQLite runs inside the calling process, so this is that machine's
  clock: the one every process sharing the database file has.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from service.db.models import UTCDateTime

#: the text form of ``UTCDateTime`` on SQLite (SQLAlchemy's DATETIME storage format)
SQLITE_FORMAT = "%Y-%m-%d %H:%M:%f000"


class db_now(FunctionElement[datetime]):  # noqa: N801 - reads as the SQL function it is
    """The database's current time plus ``seconds`` (a number or a SQL expression such as a
    ``bindparam``), as a SQL expression of type ``UTCDateTime``."""

    type = UTCDateTime()
    inherit_cache = True
    name = "db_now"

    def __init__(self, seconds: float | ColumnElement[Any] = 0.0):
        offset = seconds if isinstance(seconds, ColumnElement) else literal(float(seconds), Float)
        super().__init__(offset)


@compiles(db_now, "postgresql")
def _postgresql(element: db_now, compiler: Any, **kw: Any) -> str:
    (seconds,) = element.clauses
    return f"(now() + make_interval(secs => {compiler.process(seconds, **kw)}))"


@compiles(db_now, "sqlite")
def _sqlite(element: db_now, compiler: Any, **kw: Any) -> str:
    (seconds,) = element.clauses
    return f"strftime('{SQLITE_FORMAT}', 'now', ({compiler.process(seconds, **kw)}) || ' seconds')"
