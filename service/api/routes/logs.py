"""``GET /v1/experiments/{id}/logs``: a run's log lines, in order; ``follow=true`` streams them.

Lines are numbered per experiment (``seq``, from 1; only the newest ``REGLAB_MAX_LOG_LINES``
are kept). ``since=N`` returns the lines after seq N. With ``follow=true`` the answer is a
server-sent event stream: one ``log`` event a line (``id`` is its seq, so a reconnecting client's
``Last-Event-ID`` resumes after it), comments as keep-alives, and one ``end`` event once the
experiment has ended and its worker's last lines are in (the worker writes its outcome line right
after the outcome), after which the stream closes. Owner-scoped as the experiment is.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from service.api import schemas
from service.api.auth import OwnerDep
from service.api.deps import SessionDep
from service.api.routes.experiments import _experiment as owned_experiment
from service.db import logs
from service.db.models import TERMINAL, RunLog, utcnow

router = APIRouter(prefix="/v1/experiments", tags=["experiments"])

#: how often a follower looks for new lines, and sends a keep-alive when there are none
POLL_S = 0.5
KEEPALIVE_S = 15.0
#: after the experiment ended, how long a follower waits for its worker's last lines (the
#: worker flushes them within a fraction of a second of the outcome)
SETTLE_S = 2.0
PAGE = 1000


def line_view(row: RunLog) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "time": row.created_at,  # written as the API writes every time (schemas.LogLine)
        "level": row.level,
        "logger": row.logger,
        "attempt": row.attempt,
        "message": row.message,
    }


@router.get(
    "/{experiment_id}/logs",
    response_model=schemas.LogPage,
    responses={
        200: {
            "description": "the lines as JSON, or with follow=true a text/event-stream",
            "content": {"text/event-stream": {}},
        }
    },
)
def get_logs(
    experiment_id: str,
    request: Request,
    session: SessionDep,
    owner: OwnerDep,
    since: Annotated[int, Query(ge=0, le=2**31 - 1, description="lines after this seq")] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000, description="at most this many lines")] = PAGE,
    follow: Annotated[bool, Query(description="stream new lines (SSE) until the run ends")] = False,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> Any:
    row = owned_experiment(session, experiment_id, owner)
    if not follow:
        lines = logs.since(session, row.id, since, limit)
        state = logs.state(session, row.id)
        return {
            "items": [line_view(r) for r in lines],
            "next_since": lines[-1].seq if lines else since,
            "last_seq": state.last_seq if state else 0,
            "status": state.status if state else row.status,
        }
    if last_event_id is not None and last_event_id.isdigit():
        since = max(since, int(last_event_id))
    sessions: sessionmaker[Session] = request.app.state.sessionmaker
    return StreamingResponse(
        _follow(request, sessions, row.id, since),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _poll(sessions: sessionmaker[Session], experiment_id: str, after: int):
    """One short read: new lines, the status, and whether the run ended over SETTLE_S ago."""
    with sessions() as session:
        lines = [line_view(r) for r in logs.since(session, experiment_id, after, PAGE)]
        state = logs.state(session, experiment_id)
    if state is None:  # deleted meanwhile
        return lines, "deleted", True
    settled = state.status in TERMINAL and (
        state.finished_at is None or utcnow() - state.finished_at > timedelta(seconds=SETTLE_S)
    )
    return lines, state.status, settled


def _event(kind: str, data: dict[str, Any], ident: int | None = None) -> str:
    head = f"id: {ident}\n" if ident is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _follow(
    request: Request, sessions: sessionmaker[Session], experiment_id: str, after: int
) -> AsyncIterator[str]:
    quiet_since = time.monotonic()
    yield ": following\n\n"  # headers and a first byte now, before any line exists
    while True:
        lines, status, settled = await run_in_threadpool(_poll, sessions, experiment_id, after)
        for line in lines:
            after = line["seq"]
            yield _event("log", schemas.LogLine(**line).model_dump(mode="json"), after)
        if lines:
            quiet_since = time.monotonic()
            if len(lines) == PAGE:
                continue  # more are waiting
        elif settled:
            yield _event("end", {"status": status, "last_seq": after})
            return
        if await request.is_disconnected():
            return
        if time.monotonic() - quiet_since >= KEEPALIVE_S:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        await asyncio.sleep(POLL_S)
