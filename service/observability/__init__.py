"""Operations: request ids, JSON logs and Prometheus metrics (``install`` wires them in)."""

from __future__ import annotations

from fastapi import FastAPI

from service.observability import metrics
from service.observability.requests import RequestMiddleware


def install(app: FastAPI) -> None:
    """Call after the other middleware: the request-id middleware must be the outermost."""
    app.add_middleware(RequestMiddleware)
    app.include_router(metrics.router)
