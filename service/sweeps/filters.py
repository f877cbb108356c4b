"""The ``filter`` and ``sort`` parameters of ``GET /v1/experiments``: a small grammar, parsed
here into clauses that ``service.db.latest`` turns into SQLAlchemy expressions with bound
parameters. No user text ever becomes SQL; anything outside the grammar is refused (422).

Grammar (keywords case-insensitive)::

    filter := clause ("and" clause)*             at most 10 clauses, 500 characters
    clause := key op value
    key    := a metric key  [a-z][a-z0-9_]*     compares the experiment's latest value
            | status | name | queue | sweep_id  compares the experiment's field (= and != only)
    op     := "=" | "!=" | "<" | "<=" | ">" | ">="
    value  := number | word | 'text' | "text"   numbers for metrics; status one of the five

    sort   := ["-"] key                          key a metric, or created_at | name | status;
                                                 "-" is descending; missing values sort last

Examples: ``filter=test_acc>0.8 and status=succeeded``, ``sort=-test_acc``,
``filter=gen_gap<0.1 and name='mnist1d l2'``. An experiment with no value of a metric never
matches a clause on that metric.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FIELDS = ("status", "name", "queue", "sweep_id")
SORT_FIELDS = ("created_at", "name", "status")
OPS = ("=", "!=", "<", "<=", ">", ">=")
MAX_LEN = 500
MAX_CLAUSES = 10
KEY = re.compile(r"[a-z][a-z0-9_]{0,99}")

_TOKENS = re.compile(
    r"""\s*(?:
        (?P<op>!=|<=|>=|=|<|>)
      | (?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![A-Za-z0-9_.])
      | (?P<str>'[^'\\]{0,200}'|"[^"\\]{0,200}")
      | (?P<word>[A-Za-z0-9_][A-Za-z0-9_\-.]{0,199})
    )""",
    re.VERBOSE,
)


class FilterError(ValueError):
    def __init__(self, param: str, message: str):
        self.param = param
        self.message = message
        super().__init__(f"{param}: {message}")


@dataclass(frozen=True)
class Clause:
    key: str
    op: str
    value: float | str
    kind: Literal["metric", "field"]


@dataclass(frozen=True)
class Sort:
    key: str
    descending: bool
    kind: Literal["metric", "field"]


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKENS.match(text, pos)
        if m is None or m.end() == pos:
            raise FilterError(
                "filter", f"unexpected {text[pos:].strip()[:20]!r} at position {pos}; "
                "expected key op value, clauses joined by 'and'"
            )  # fmt: skip
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind), m.start(kind)))
        pos = m.end()
    return out


def parse_filter(text: str | None) -> list[Clause]:
    if text is None or not text.strip():
        return []
    if len(text) > MAX_LEN:
        raise FilterError("filter", f"at most {MAX_LEN} characters")
    tokens = _tokens(text)
    clauses: list[Clause] = []
    i = 0
    while True:
        if i + 3 > len(tokens):
            raise FilterError("filter", "incomplete clause; expected key op value")
        (kk, key, kpos), (ok, op, opos), (vk, raw, vpos) = tokens[i : i + 3]
        if kk != "word" or not KEY.fullmatch(key):
            raise FilterError(
                "filter",
                f"{key!r} at position {kpos} is not a key: use a metric key (lower case, digits, "
                f"_) or one of {', '.join(FIELDS)}",
            )
        if ok != "op":
            raise FilterError(
                "filter", f"expected an operator ({' '.join(OPS)}) at position {opos}, got {op!r}"
            )
        clauses.append(_clause(key, op, vk, raw))
        i += 3
        if i == len(tokens):
            break
        kind, word, pos = tokens[i]
        if kind != "word" or word.lower() != "and":
            raise FilterError("filter", f"expected 'and' at position {pos}, got {word!r}")
        i += 1
        if len(clauses) >= MAX_CLAUSES:
            raise FilterError("filter", f"at most {MAX_CLAUSES} clauses")
    return clauses


def _clause(key: str, op: str, kind: str, raw: str) -> Clause:
    if key in FIELDS:
        if op not in ("=", "!="):
            raise FilterError("filter", f"{key} compares with = or != only")
        if kind not in ("word", "str", "num"):
            raise FilterError("filter", f"{key} needs a value")
        value = raw[1:-1] if kind == "str" else raw
        if key == "status" and value not in STATUSES:
            raise FilterError("filter", f"status is one of {', '.join(STATUSES)}, not {value!r}")
        return Clause(key, op, value, "field")
    if kind != "num":
        raise FilterError("filter", f"{key} is a metric: compare it with a number, not {raw!r}")
    number = float(raw)
    if not math.isfinite(number):
        raise FilterError("filter", f"{raw} is not a finite number")
    return Clause(key, op, number, "metric")


def parse_sort(text: str | None) -> Sort | None:
    if text is None or not text.strip():
        return None
    text = text.strip()
    descending = text.startswith("-")
    key = text[1:] if descending else text
    if not KEY.fullmatch(key):
        raise FilterError(
            "sort", f"{text[:50]!r} is not a sort key: [-]metric_key or [-]{'|'.join(SORT_FIELDS)}"
        )
    if key in SORT_FIELDS:
        return Sort(key, descending, "field")
    if key in FIELDS:
        raise FilterError(
            "sort", f"sorting by {key} is not supported; use {', '.join(SORT_FIELDS)}"
        )
    return Sort(key, descending, "metric")
