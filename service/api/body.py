"""Reading request bodies ourselves: size, content type, strict JSON, storable values.

A spec arrives as JSON and must fit in a database column and a training run: no NaN or
Infinity, no number beyond 64 bits, no NUL byte or unpaired surrogate in any string. Each
refusal is a 4xx naming the field.
"""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import Request

from service.api.errors import APIError

#: JSON numbers a database column or a 64-bit field can hold; larger ones are refused, not cut.
_INT_LIMIT = 2**63
BAD_TEXT = "text must not contain NUL bytes or unpaired surrogates"


def is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _reject_constant(token: str) -> float:
    raise ValueError(f"{token} is not a number JSON allows; use a finite value")


def _finite_float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise ValueError(f"{token} is out of range for a floating-point number")
    return value


async def read_json_body(request: Request, max_bytes: int, what: str = "the spec") -> Any:
    if not is_json(request.headers.get("content-type")):
        raise APIError(
            415,
            "unsupported media type",
            f"expected Content-Type application/json, got {request.headers.get('content-type')!r}",
        )
    too_large = APIError(413, "payload too large", f"{what} must be at most {max_bytes} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise too_large
    try:
        data = json.loads(bytes(body), parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        message = str(exc) if str(exc) else type(exc).__name__
        raise APIError(
            422, "invalid JSON", [{"field": "body", "message": f"not valid JSON: {message}"}]
        ) from None
    try:
        problem = unstorable(data, "")
    except RecursionError:
        problem = {"field": "body", "message": "nested too deeply"}
    if problem is not None:
        raise APIError(422, "invalid spec", [problem])
    return data


def unstorable(value: Any, path: str) -> dict[str, str] | None:
    """The first value no database column or training run can hold: a NUL byte or an unpaired
    surrogate in a string (PostgreSQL and UTF-8 refuse them), or an integer beyond 64 bits."""
    here = path or "body"
    if isinstance(value, str):
        return None if storable_text(value) else {"field": here, "message": BAD_TEXT}
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _INT_LIMIT:
        return {"field": here, "message": "integer out of range (|n| < 2**63)"}
    if isinstance(value, dict):
        children = [(f"{path}.{k}" if path else k, k, v) for k, v in value.items()]
    elif isinstance(value, list):
        children = [(f"{path}[{i}]", "", v) for i, v in enumerate(value)]
    else:
        return None
    for where, key, item in children:
        if not storable_text(key):
            return {"field": here, "message": BAD_TEXT}
        found = unstorable(item, where)
        if found is not None:
            return found
    return None


def storable_text(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def refuse_simple_bodies(request: Request) -> None:
    """A body-less POST still must not accept a form or text body: a cross-site "simple
    request" (no preflight) could otherwise act with the user's network position."""
    content_type = request.headers.get("content-type")
    if content_type is not None and not is_json(content_type):
        raise APIError(
            415,
            "unsupported media type",
            f"send no body or application/json, not {content_type!r}",
        )
