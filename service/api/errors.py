"""JSON error bodies everywhere: ``{"error": <what>, "detail": <specifics>}``, never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger(__name__)

_REASONS = {
    400: "bad request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    409: "conflict",
    413: "payload too large",
    415: "unsupported media type",
    422: "invalid request",
    503: "not ready",
}


class APIError(Exception):
    """An error answered as JSON with the given status."""

    def __init__(self, status: int, error: str, detail: Any = None, headers: dict | None = None):
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers
        super().__init__(f"{status} {error}: {detail}")


def not_found(what: str, ident: str) -> APIError:
    return APIError(404, "not found", f"{what} {ident} does not exist")


def _field(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


async def _api_error(_: Request, exc: APIError) -> JSONResponse:
    return JSONResponse(
        {"error": exc.error, "detail": exc.detail}, status_code=exc.status, headers=exc.headers
    )


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    error = _REASONS.get(exc.status_code, "error")
    detail = exc.detail if exc.detail not in (None, "") else error
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    return JSONResponse(
        {"error": error, "detail": detail}, status_code=exc.status_code, headers=headers
    )


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE and getattr(route, "methods", None):
            methods |= set(route.methods)
    return ", ".join(sorted(methods))


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    detail = [{"field": _field(tuple(e["loc"])), "message": e["msg"]} for e in exc.errors()]
    return JSONResponse({"error": "invalid request", "detail": detail}, status_code=422)


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(
        {"error": "internal error", "detail": f"{type(exc).__name__} while handling the request"},
        status_code=500,
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unhandled)
