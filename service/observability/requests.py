"""The outermost ASGI middleware: a request id for every request (``X-Request-ID`` in and out,
``service.observability.context``) and the per-route request count and latency of
``service.observability.metrics``. Routes are labelled by their template
(``/v1/experiments/{experiment_id}``), unmatched paths as ``unmatched``, so the label set stays
bounded whatever paths clients send."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.observability import metrics
from service.observability.context import HEADER, accept, request_id

_HEADER = HEADER.lower().encode()


class RequestMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = None
        for key, value in scope.get("headers", ()):
            if key.lower() == _HEADER:
                sent = value.decode("latin-1")
                break
        rid = accept(sent)
        token = request_id.set(rid)
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != _HEADER]
                message = {**message, "headers": [*headers, (_HEADER, rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            metrics.observe(scope["method"], template, status, time.perf_counter() - start)
            request_id.reset(token)
