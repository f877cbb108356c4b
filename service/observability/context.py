"""The request id of what is being done now (an API request, or the task it enqueued), kept in
a context variable so every log line can carry it, and handed from the API to the worker in the
task message's headers.

- API: ``X-Request-ID`` in (when it is a sane token) or a new one; it goes back in the response's
  ``X-Request-ID`` (``service.observability.requests``).
- Enqueue: Celery's ``before_task_publish`` signal adds the header ``reglab_request_id`` to every
  task message sent while a request id is set (the submit's thread runs with a copy of the
  request's context).
- Worker: ``task_prerun`` sets the context variable from ``task.request.reglab_request_id``
  and ``task_postrun`` clears it, so the JSON log lines of the run carry the submit's id. These
  handlers are connected when this module is imported: the worker imports it (through
  ``configure_logging``).
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from typing import Any

from celery import signals

HEADER = "X-Request-ID"
TASK_HEADER = "reglab_request_id"
_SANE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

request_id: ContextVar[str | None] = ContextVar("reglab_request_id", default=None)


def accept(value: str | None) -> str:
    """The client's id when it is a plain token (no spaces, quotes or control bytes, at most 128
    characters: it is echoed in logs and headers), else a new one."""
    if value and _SANE.match(value):
        return value
    return uuid.uuid4().hex


@signals.before_task_publish.connect
def _add_header(headers: dict[str, Any] | None = None, **_: Any) -> None:
    rid = request_id.get()
    if rid is not None and headers is not None:
        headers[TASK_HEADER] = rid


@signals.task_prerun.connect
def _bind_task(task: Any = None, **_: Any) -> None:
    rid = getattr(getattr(task, "request", None), TASK_HEADER, None)
    request_id.set(rid if isinstance(rid, str) and _SANE.match(rid) else None)


@signals.task_postrun.connect
def _unbind_task(**_: Any) -> None:
    request_id.set(None)
