"""Query parameters the routes share, parsed and checked here: metric keys, ids, text, the
``filter``/``sort`` grammar (``service.sweeps.filters``). Each refusal is a 422 naming the
parameter."""

from __future__ import annotations

import re

from service.api.body import BAD_TEXT, storable_text
from service.api.errors import APIError
from service.sweeps.filters import Clause, FilterError, Node, Sort, parse_filter, parse_sort

#: ids are uuid4 hex; anything else is unknown without asking the database (a NUL byte or a
#: 4 KB "id" would otherwise reach it, and PostgreSQL refuses NUL in text).
ID = re.compile(r"^[0-9a-f]{32}$")
#: a metric key, as the filter grammar spells it (``service.sweeps.filters.KEY``).
_KEYS = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
#: metric keys one request may name (each is an IN item and a series in the answer).
MAX_KEYS = 50


def invalid(param: str, message: str) -> APIError:
    return APIError(422, "invalid request", [{"loc": param, "msg": message}])


def shown(ident: str) -> str:
    return ident if len(ident) <= 64 else ident[:64] + "..."


def text_param(value: str | None, field: str) -> str | None:
    if value is not None and not storable_text(value):
        raise invalid(field, BAD_TEXT)
    return value


def keys_param(keys: str | None) -> list[str] | None:
    if keys is None:
        return None
    wanted = [k.strip() for k in keys.split(",") if k.strip()]
    bad = [k for k in wanted if not _KEYS.match(k)]
    if bad or len(wanted) > MAX_KEYS:
        raise invalid("keys", f"up to {MAX_KEYS} comma-separated metric keys ([a-z0-9_])")
    return wanted


def filter_and_sort(filter: str | None, sort: str | None) -> tuple[Node | None, Sort | None]:
    try:
        return parse_filter(filter), parse_sort(sort)
    except FilterError as err:
        raise invalid(err.param, err.message) from None


def ids_param(raw: list[str], most: int) -> list[str]:
    ids: list[str] = []
    for part in raw:
        for i in part.split(","):
            i = i.strip()
            if i and i not in ids:
                ids.append(i)
    if not ids:
        raise invalid("ids", "give at least one id")
    if len(ids) > most:
        raise invalid("ids", f"{len(ids)} ids; compare at most {most} experiments at once")
    return ids


__all__ = ["Clause", "ID", "MAX_KEYS", "filter_and_sort", "ids_param", "keys_param"]
