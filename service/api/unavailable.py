"""503, not 500, while the database is unreachable, read-only or full: the request may simply be
retried.

A connection refused, a server restarting or a connection cut mid-query surface as SQLAlchemy's
``OperationalError`` (or a ``DBAPIError`` that invalidated its connection); a write to a
read-only database as SQLSTATE 25006, to a full one as 53100 (``service.db.outage``). The
answer is problem+json with ``Retry-After``; nothing of the driver's message (host names,
ports) is echoed. The pool pings connections before use and replaces those that met a
read-only database, so the next request after the database is back succeeds without a
restart of the API.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from service.api.errors import problem
from service.db.outage import describe, unreachable

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5


def unavailable_response(why: str = "the database is unreachable") -> JSONResponse:
    return problem(
        503,
        "not ready",
        f"{why}; retry shortly",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def _database_error(request: Request, exc: DBAPIError) -> JSONResponse:
    if not unreachable(exc):
        raise exc  # a real bug: the 500 handler logs it and answers JSON
    why = f"the database is {describe(exc)}"
    log.warning("%s on %s %s: %s", why, request.method, request.url.path, type(exc.orig))
    return unavailable_response(why)


async def _pool_exhausted(request: Request, exc: PoolTimeout) -> JSONResponse:
    # every pooled connection busy past the pool timeout (service.db.session): retry shortly
    log.warning("no database connection free for %s %s", request.method, request.url.path)
    return unavailable_response()


def install(app: FastAPI) -> None:
    app.add_exception_handler(DBAPIError, _database_error)  # type: ignore[arg-type]
    app.add_exception_handler(PoolTimeout, _pool_exhausted)  # type: ignore[arg-type]
