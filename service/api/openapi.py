"""The OpenAPI document's error side, its operation ids, and ``/docs`` served with no CDN.

FastAPI documents only the success response and its own 422 shape; our errors are all RFC 9457
problems (``service/api/errors.py``), and the auth middleware can answer 401, 403 (no key, and
a Host that is not loopback) and 503 on any route but the probes. Declaring them keeps clients
and the schemathesis run honest.

Operation ids are the route functions' names (``list_experiments``, ``get_sweep``), stable
across path or method changes, and unique (FastAPI warns on a duplicate).

``/docs`` is Swagger UI from the vendored ``swagger-ui-dist`` files in
``service/static/swagger-ui`` (version and license in its README.md), served at
``/docs/assets/``: the page loads nothing from an outside host.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from service.api.errors import MEDIA_TYPE
from service.api.patch import Patch

ASSETS = Path(__file__).resolve().parent.parent / "static" / "swagger-ui"

PROBLEM_SCHEMA = {
    "title": "Problem",
    "type": "object",
    "description": "an RFC 9457 problem detail",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "a URN naming the kind of problem"},
        "title": {"type": "string", "description": "what went wrong, in a few words"},
        "status": {"type": "integer", "description": "the HTTP status"},
        "detail": {"type": "string", "description": "this occurrence, in a sentence"},
        "instance": {"type": "string", "description": "the request path"},
        "errors": {
            "type": "array",
            "description": "on 422: every field at fault",
            "items": {"$ref": "#/components/schemas/FieldError"},
        },
    },
}
FIELD_ERROR_SCHEMA = {
    "title": "FieldError",
    "type": "object",
    "required": ["loc", "msg"],
    "properties": {
        "loc": {"type": "string", "description": "the field path, e.g. regularizers[1].p"},
        "msg": {"type": "string", "description": "why it was refused"},
    },
}
_REF = {"$ref": "#/components/schemas/Problem"}

_DESCRIPTIONS = {
    "400": "malformed request (e.g. a multipart body that cannot be parsed)",
    "401": "missing, unknown or revoked API key",
    "403": "no API key, and the Host header names no loopback or allowed host",
    "404": "no such resource (or not yours)",
    "409": "conflict with the resource's state",
    "413": "request body too large",
    "415": "the body must be application/json",
    "422": "invalid request: the fields at fault and why",
    "429": "too many requests; retry after Retry-After seconds",
    "503": "the database or broker is unreachable",
}


def operation_id(route: APIRoute) -> str:
    return route.name


def document_errors(schema: dict[str, Any], open_paths: frozenset[str]) -> dict[str, Any]:
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    components["schemas"]["FieldError"] = FIELD_ERROR_SCHEMA
    # PATCH bodies are read by hand (strict JSON, service/api/patch.py): publish their schema
    components["schemas"]["Patch"] = Patch.model_json_schema()
    for name in ("HTTPValidationError", "ValidationError"):
        components["schemas"].pop(name, None)
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "an API key from `reglab keys create`; required unless served on loopback",
    }
    for path, item in schema.get("paths", {}).items():
        for method, op in item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            codes = {"422"}
            if path not in open_paths:
                codes |= {"401", "403", "503"}
                op["security"] = [{"bearer": []}, {}]
            if "{" in path:
                codes.add("404")
            if method in ("post", "put", "patch"):
                codes |= {"400", "413", "415"}
            responses = op["responses"]
            for code in codes | {c for c in responses if c[0] in "45"}:
                entry = responses.setdefault(code, {})
                entry["description"] = entry.get("description") or _DESCRIPTIONS.get(code, "error")
                if code in _DESCRIPTIONS and entry["description"] == "Successful Response":
                    entry["description"] = _DESCRIPTIONS[code]
                entry["content"] = {MEDIA_TYPE: {"schema": _REF}}
    return schema


def install_docs(app: FastAPI) -> None:
    """``/docs`` from the vendored assets (create the app with ``docs_url=None``)."""
    app.mount("/docs/assets", StaticFiles(directory=ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
        )
