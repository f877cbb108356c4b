"""The error side of the OpenAPI document: every status a route can answer, with its JSON body.

FastAPI documents only the success response and its own 422 shape; our errors are all
``{"error", "detail"}`` (``service/api/errors.py``), and the auth middleware can answer 401, 403
(no key, and a Host that is not loopback) and 503 on any route but ``/healthz``. Declaring them
keeps clients and the schemathesis run honest.
"""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "description": "what went wrong, in a few words"},
        "detail": {"description": "the specifics: a message, or a list of {field, message}"},
    },
}
_REF = {"$ref": "#/components/schemas/Error"}

_DESCRIPTIONS = {
    "401": "missing, unknown or revoked API key",
    "403": "no API key, and the Host header names no loopback or allowed host",
    "404": "no such resource (or not yours)",
    "409": "conflict with the resource's state",
    "413": "request body too large",
    "415": "the body must be application/json",
    "422": "invalid request: the fields at fault and why",
    "503": "the database or broker is unreachable",
}


def document_errors(schema: dict[str, Any], open_paths: frozenset[str]) -> dict[str, Any]:
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
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
                codes |= {"413", "415"}
            responses = op["responses"]
            for code in codes | {c for c in responses if c[0] in "45"}:
                entry = responses.setdefault(code, {})
                entry["description"] = entry.get("description") or _DESCRIPTIONS.get(code, "error")
                if code in _DESCRIPTIONS and entry["description"] == "Successful Response":
                    entry["description"] = _DESCRIPTIONS[code]
                entry["content"] = {"application/json": {"schema": _REF}}
    return schema
