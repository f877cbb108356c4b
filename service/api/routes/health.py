"""Liveness and readiness."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from service.api import schemas
from service.api.errors import problem
from service.queue import broker_ready

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=schemas.Health)
async def healthz() -> dict[str, str]:
    """Liveness in constant time: answered on the event loop, touching neither the database
    pool nor the thread pool (a sync route here waited behind every busy thread)."""
    return {"status": "ok"}


def _database_ready(request: Request) -> str | None:
    try:
        with request.app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - reported in the body
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


@router.get(
    "/readyz",
    response_model=schemas.Readiness,
    responses={503: {"description": "database or broker unreachable"}},
)
async def readyz(request: Request) -> Any:
    """200 when the database and the broker answer; 503 with the reason otherwise."""
    db = await run_in_threadpool(_database_ready, request)
    broker = await run_in_threadpool(broker_ready, request.app.state.celery)
    # /readyz answers without a key (service/api/auth.py): the reasons go to the log, not out.
    if db or broker:
        log.warning("not ready: database %s, broker %s", db or "ok", broker or "ok")
    checks = {
        "database": "unreachable" if db else "ok",
        "broker": "unreachable" if broker else "ok",
    }
    if db or broker:
        down = " and ".join(k for k, v in checks.items() if v != "ok")
        return problem(503, "not ready", f"the {down} did not answer", checks=checks)
    return {"status": "ready", "checks": checks}
