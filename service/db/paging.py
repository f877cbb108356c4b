"""Keyset (cursor) paging for any sorted list: the cursor holds the sort values of the last item
of a page, and the next page is the rows strictly after it in the sort order. Unlike an offset,
a page neither skips nor repeats rows when rows are added meanwhile, and costs the same deep in
the list as at its start.

A cursor is url-safe base64 of a JSON list of those values; one this server did not hand out
(or one made for another sort) is a :class:`CursorError`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_, false, or_
from sqlalchemy.orm import Session


class CursorError(ValueError):
    """A paging cursor that this server did not hand out."""


@dataclass(frozen=True)
class SortKey:
    """One ORDER BY column; ``kind`` says how its value travels in the cursor (text, time,
    integer, float). Only a nullable key may hold NULL, and it must follow a key that puts the
    NULLs together (``service.db.search``: "missing" first, then the value)."""

    column: Any
    descending: bool
    kind: Literal["s", "t", "i", "f"]
    nullable: bool = False


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_cursor: str | None


def _encode_value(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "t":
        return value.isoformat()
    if kind == "f":
        return float(value)
    return value


def _decode_value(kind: str, value: Any, nullable: bool) -> Any:
    if value is None:
        if nullable:
            return None
        raise ValueError("null sort value")
    if kind == "t" and isinstance(value, str):
        return datetime.fromisoformat(value)
    if kind == "s" and isinstance(value, str) and len(value) <= 500:
        return value
    if kind == "i" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "f" and isinstance(value, int | float) and not isinstance(value, bool):
        if math.isfinite(value):
            return float(value)
    raise ValueError("bad sort value")


def encode(keys: Sequence[SortKey], values: Sequence[Any]) -> str:
    raw = json.dumps([_encode_value(k.kind, v) for k, v in zip(keys, values, strict=True)])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(keys: Sequence[SortKey], cursor: str) -> list[Any]:
    try:
        if len(cursor) > 2000:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        values = json.loads(raw)
        if not isinstance(values, list) or len(values) != len(keys):
            raise ValueError("wrong shape")
        return [_decode_value(k.kind, v, k.nullable) for k, v in zip(keys, values, strict=True)]
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
        raise CursorError(f"cursor {cursor[:64]!r} is not one this server returned") from None


def after(keys: Sequence[SortKey], values: Sequence[Any]) -> ColumnElement[bool]:
    """Rows strictly after ``values`` in the order of ``keys``."""
    if not keys:
        return false()
    key, rest = keys[0], keys[1:]
    value = values[0]
    if value is None:  # NULLs sort together (see SortKey): order within them by the rest
        return and_(key.column.is_(None), after(rest, values[1:]))
    beyond = key.column < value if key.descending else key.column > value
    if not rest:
        return beyond
    return or_(beyond, and_(key.column == value, after(rest, values[1:])))


def page(
    session: Session, stmt: Select, keys: Sequence[SortKey], limit: int, cursor: str | None
) -> Page:
    """One page of ``stmt`` (which selects one entity) in the order of ``keys``."""
    if cursor is not None:
        stmt = stmt.where(after(keys, decode(keys, cursor)))
    order = [k.column.desc() if k.descending else k.column.asc() for k in keys]
    columns = [k.column.label(f"_k{i}") for i, k in enumerate(keys)]
    rows = list(session.execute(stmt.add_columns(*columns).order_by(*order).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    items = [r[0] for r in rows]
    next_cursor = encode(keys, list(rows[-1][1:])) if more and rows else None
    return Page(items, next_cursor)
