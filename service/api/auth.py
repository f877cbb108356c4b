"""API keys on the wire: ``Authorization: Bearer <key>``, checked before any route runs.

Auth is required when ``REGLAB_AUTH=on``, or under the default ``auto`` when the server binds
anything but loopback (``reglab serve --host``) or a request arrived on a non-loopback address
(so ``uvicorn service.main:app --host 0.0.0.0`` is covered too), or a request carries a header a
reverse proxy adds (``Forwarded``, ``X-Forwarded-For``, ``X-Forwarded-Host``, ``X-Real-IP``):
behind a proxy on the same host every request arrives from loopback. Header checks are a
backstop, since a proxy need not add any: behind a proxy set ``REGLAB_AUTH=on``. Then only the
probes ``/healthz`` and ``/readyz`` answer without a key (an orchestrator's probe sends none;
``/readyz`` says only ok or not, ``routes/health.py``); ``/openapi.json``, ``/docs`` (they map
the attack surface) and ``/metrics`` need one (Prometheus sends it with ``authorization:``).
When auth is not required, a request without a key acts as the anonymous owner ``""``
(loopback only); a request that presents a key is always checked, and a bad key is 401 either
way.

A request served without a key must also name a loopback host in its ``Host`` header (localhost,
127.0.0.0/8 or [::1], any port), or one listed in ``REGLAB_ALLOWED_HOSTS``; otherwise it is 403.
A web page whose DNS name an attacker rebinds to 127.0.0.1 (DNS rebinding) reaches the loopback
server from the victim's browser, but its requests still carry the attacker's name as Host.

The owner found here scopes every query: another owner's experiments answer 404 (see
``routes/experiments.py``). This is a pure ASGI middleware, so it also guards routes that
FastAPI adds itself (the OpenAPI document, the docs) and never buffers a streamed download.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Collection
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.errors import problem
from service.api.unavailable import unavailable_response
from service.db import api_keys
from service.settings import Settings
from service.ui import is_shell_path  # the dashboard's static shell: no data, no key

log = logging.getLogger(__name__)

#: the owner of rows made without a key ("" and not NULL: the unique constraints need a value).
ANONYMOUS = ""
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
_SCOPE_KEY = "reglab.owner"


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


#: headers a reverse proxy adds: a request carrying one came from somewhere else, even when the
#: proxy on this host makes it arrive from loopback with a loopback ``Host``.
PROXY_HEADERS = (b"forwarded", b"x-forwarded-for", b"x-forwarded-host", b"x-real-ip")


def auth_required(settings: Settings, scope: Scope | None = None) -> bool:
    if settings.auth == "on":
        return True
    if settings.auth == "off":
        return False
    if not is_loopback(settings.bind_host):
        return True
    if scope is not None and any(_header(scope, name) is not None for name in PROXY_HEADERS):
        return True
    server = (scope or {}).get("server")
    local = server[0] if server else None
    return isinstance(local, str) and _is_ip(local) and not is_loopback(local)


def host_name(host: str) -> str | None:
    """The name in a ``Host`` header without its port (``[::1]:8000`` -> ``::1``), lowercased;
    None when the header is malformed."""
    host = host.strip().lower()
    if host.startswith("["):
        name, bracket, port = host[1:].partition("]")
        if not bracket or (port and not (port[0] == ":" and port[1:].isdigit())):
            return None
        return name
    name, colon, port = host.partition(":")
    if colon and not port.isdigit():
        return None  # a second colon (an unbracketed IPv6 address) or a port that is no number
    return name or None


def host_allowed(host: str | None, allowed: Collection[str] = ()) -> bool:
    """Whether an anonymous request's ``Host`` names loopback, or a host the operator listed."""
    name = host_name(host) if host else None
    if name is None:
        return False
    if name == "localhost" or (_is_ip(name) and is_loopback(name)):
        return True
    for entry in allowed:
        entry = entry.strip().lower()
        if entry == "*" or host_name(entry) == name:
            return True
    return False


class AuthMiddleware:
    """Resolves the request's owner from its bearer key, or answers 401 (503 without a DB)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in OPEN_PATHS or is_shell_path(path):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        header = _header(scope, b"authorization")
        if header is None:
            if auth_required(state.settings, scope):
                await _unauthorized(
                    "this server requires an API key: send 'Authorization: Bearer <key>'"
                )(scope, receive, send)
                return
            host = _header(scope, b"host")
            if not host_allowed(host, state.settings.allowed_hosts):
                await _forbidden_host(host)(scope, receive, send)
                return
            scope[_SCOPE_KEY] = ANONYMOUS
            await self.app(scope, receive, send)
            return
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            await _unauthorized("the Authorization header must be 'Bearer <key>'", invalid=True)(
                scope, receive, send
            )
            return
        try:
            owner = await run_in_threadpool(_owner_of, state.sessionmaker, token)
        except Exception as exc:  # noqa: BLE001 - the database is down or unreachable
            log.warning("API key lookup failed: %s", type(exc).__name__)
            await unavailable_response()(scope, receive, send)
            return
        if owner is None:
            await _unauthorized("the API key is unknown or revoked", invalid=True)(
                scope, receive, send
            )
            return
        scope[_SCOPE_KEY] = owner
        await self.app(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _owner_of(sessionmaker: Any, token: str) -> str | None:
    with sessionmaker() as session:
        row = api_keys.authenticate(session, token)
        return row.owner if row is not None else None


def _unauthorized(detail: str, invalid: bool = False) -> Any:
    challenge = 'Bearer error="invalid_token"' if invalid else "Bearer"
    return problem(401, "unauthorized", detail, headers={"WWW-Authenticate": challenge})


def _forbidden_host(host: str | None) -> Any:
    shown = "no Host header" if host is None else f"Host {host[:100]!r}"
    return problem(
        403,
        "forbidden",
        f"{shown} is not a loopback name (localhost, 127.0.0.1, [::1]): a request "
        "without an API key must name this machine, so that a web page rebinding its DNS "
        "name to this server cannot use it; send 'Authorization: Bearer <key>', or list the "
        "host in REGLAB_ALLOWED_HOSTS",
    )


async def get_owner(request: Request) -> str:
    # Fails closed: a route reached without the middleware has no owner, not the anonymous one.
    # async: a sync dependency costs every request a hop through the thread pool
    return request.scope[_SCOPE_KEY]


OwnerDep = Annotated[str, Depends(get_owner)]
