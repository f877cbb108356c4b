"""Errors as RFC 9457 problem details (``application/problem+json``), everywhere, never a
traceback::

    {"type": "urn:reglab:problem:invalid-spec", "title": "invalid spec", "status": 422,
     "detail": "regularizers[1].p: Input should be less than 1",
     "instance": "/v1/experiments",
     "errors": [{"loc": "regularizers[1].p", "msg": "Input should be less than 1"}]}

``title`` is what went wrong in a few words (the same for every occurrence of the problem),
``detail`` this occurrence in one sentence, ``errors`` (on 422) every field at fault: ``loc``
is the field path as the spec spells it (``regularizers[1].p``, ``query.limit``), ``msg`` why.
``type`` is a URN made from the title: it names the kind of problem, it is not a page to fetch.

Routes raise :class:`APIError`; FastAPI's ``HTTPException`` and ``RequestValidationError`` (from
any router, other engineers' too) and unhandled exceptions are converted by the handlers that
:func:`install` registers, so every route answers the same shape.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"

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
    429: "too many requests",
    500: "internal error",
    503: "not ready",
}


class APIError(Exception):
    """An error answered as problem+json with the given status.

    ``detail`` is a sentence, or (for 422) a list of ``{"field", "message"}`` or ``{"loc",
    "msg"}`` dicts that becomes ``errors`` (and the sentence is made from the first of them).
    """

    def __init__(self, status: int, error: str, detail: Any = None, headers: dict | None = None):
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers
        super().__init__(f"{status} {error}: {detail}")


def not_found(what: str, ident: str) -> APIError:
    return APIError(404, "not found", f"{what} {ident} does not exist")


def field_path(loc: tuple[Any, ...]) -> str:
    """``("regularizers", 1, "p")`` -> ``regularizers[1].p``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def problem_type(title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "error"
    return f"urn:reglab:problem:{slug}"


def field_errors(items: Any) -> list[dict[str, str]]:
    """``[{"loc", "msg"}]`` from either spelling (``{"field", "message"}`` is regcore's)."""
    out = []
    for item in items:
        if isinstance(item, dict):
            loc = item.get("loc", item.get("field", "body"))
            if isinstance(loc, list | tuple):
                loc = field_path(tuple(loc))
            out.append({"loc": str(loc), "msg": str(item.get("msg", item.get("message", "")))})
        else:
            out.append({"loc": "body", "msg": str(item)})
    return out


def problem(
    status: int,
    title: str | None = None,
    detail: Any = None,
    *,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """The problem+json response; a list ``detail`` becomes ``errors`` (and a one-line detail)."""
    title = title or _REASONS.get(status, "error")
    body: dict[str, Any] = {"type": problem_type(title), "title": title, "status": status}
    if isinstance(detail, list):
        errors = field_errors(detail)
        body["errors"] = errors
        if errors:
            first = errors[0]
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            detail = f"{first['loc']}: {first['msg']}{more}"
        else:
            detail = title
    elif isinstance(detail, dict):
        body.update({k: v for k, v in detail.items() if k not in body})
        detail = title
    elif status == 422:
        body["errors"] = [{"loc": "body", "msg": str(detail or title)}]
    body["detail"] = str(detail) if detail not in (None, "") else title
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


async def _api_error(request: Request, exc: APIError) -> JSONResponse:
    return problem(
        exc.status, exc.error, exc.detail, instance=request.url.path, headers=exc.headers
    )


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    return problem(exc.status_code, None, exc.detail, instance=request.url.path, headers=headers)


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE and getattr(route, "methods", None):
            methods |= set(route.methods)
    return ", ".join(sorted(methods))


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"loc": field_path(tuple(e["loc"])), "msg": e["msg"]} for e in exc.errors()]
    return problem(422, "invalid request", errors, instance=request.url.path)


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(
        500,
        "internal error",
        f"{type(exc).__name__} while handling the request",
        instance=request.url.path,
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unhandled)
