"""503, not 500, while the database is unreachable: the request may simply be retried.

A connection refused, a server restarting or a connection cut mid-query surface as SQLAlchemy's
``OperationalError`` (or a ``DBAPIError`` that invalidated its connection). The answer is
problem+json with ``Retry-After``; nothing of the driver's message (host names, ports) is
echoed. The pool pings connections before use, so the next request after the database is back
succeeds without a restart of the API.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from service.api.errors import problem

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5


def database_unreachable(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


def unavailable_response() -> JSONResponse:
    return problem(
        503,
        "not ready",
        "the database is unreachable; retry shortly",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def _database_error(request: Request, exc: DBAPIError) -> JSONResponse:
    if not database_unreachable(exc):
        raise exc  # a real bug: the 500 handler logs it and answers JSON
    log.warning(
        "database unreachable on %s %s: %s", request.method, request.url.path, type(exc.orig)
    )
    return unavailable_response()


async def _pool_exhausted(request: Request, exc: PoolTimeout) -> JSONResponse:
    # every pooled connection busy past the pool timeout (service.db.session): retry shortly
    log.warning("no database connection free for %s %s", request.method, request.url.path)
    return unavailable_response()


def install(app: FastAPI) -> None:
    app.add_exception_handler(DBAPIError, _database_error)  # type: ignore[arg-type]
    app.add_exception_handler(PoolTimeout, _pool_exhausted)  # type: ignore[arg-type]
