"""The web dashboard: a static single-page app served by the API itself (``/`` and ``/ui/``).

The shell (HTML, JavaScript modules, CSS and the vendored chart libraries in ``static/vendor``,
see ``static/vendor/VENDORED.md``) carries no data, so it loads without an API key; everything
it shows it fetches from the public REST API with the key the user entered (kept in the
browser's sessionStorage), so the API's auth and owner scoping apply unchanged. A strict
Content-Security-Policy keeps the page from loading or calling anything but this server.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

STATIC = Path(__file__).parent / "static"
PREFIX = "/ui"

#: nothing from another host: scripts, styles, images and API calls all come from this origin.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


def is_shell_path(path: str) -> bool:
    """The paths the auth middleware lets through without a key: the static shell only."""
    return path == "/" or path.startswith(PREFIX + "/")


class _Shell(StaticFiles):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message):  # type: ignore[no-untyped-def]
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"cache-control", b"no-cache"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await super().__call__(scope, receive, send_with_headers)


def install(app: FastAPI) -> None:
    app.mount(PREFIX, _Shell(directory=STATIC, html=True), name="ui")

    @app.get("/", include_in_schema=False)
    def dashboard() -> RedirectResponse:
        return RedirectResponse(PREFIX + "/", status_code=307)
