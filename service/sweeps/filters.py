"""The ``filter`` and ``sort`` parameters of ``GET /v1/experiments``: a small grammar, parsed
here into a tree of clauses that ``service.db.search`` turns into SQLAlchemy expressions with
bound parameters. No user text ever becomes SQL; anything outside the grammar is refused (422).

Grammar (keywords case-insensitive; ``and`` binds tighter than ``or``)::

    filter := term ("or" term)*                  at most 20 clauses, 500 characters
    term   := factor ("and" factor)*
    factor := "(" filter ")" | clause            parentheses nest at most 5 deep
    clause := key op value | key "in" "(" value ("," value)* ")"
    key    := a metric key  [a-z][a-z0-9_]*     compares the experiment's latest value
            | status | name | queue | sweep_id  the experiment's field (=, != and in)
            | params.<spec path>                what was run: params.model.name,
                                                params.train.lr, params.regularizers.l2.strength
                                                (a regularizer's parameters under its name),
                                                params.regularizers (the names used)
            | tags.<tag key>                    a tag's value (=, != and in)
    op     := "=" | "!=" | "<" | "<=" | ">" | ">="
    value  := number | word | 'text' | "text"   numbers for metrics; status one of the five

    sort   := ["-"] key                          key a metric, or created_at | name | status;
                                                 "-" is descending; missing values sort last

A ``params.`` clause with a number compares the parameter as a number (``<`` etc. allowed), with
a word or quoted text as text (``=``, ``!=``, ``in``); booleans are ``true``/``false``. A clause on
a metric, a parameter or a tag the experiment does not have never matches (``!=`` included).

Examples: ``filter=test_acc>0.8 and status=succeeded``, ``sort=-test_acc``,
``filter=params.regularizers.l2.strength>=1e-3 and (params.model.name=mlp or tags.team=vision)``,
``filter=status in (failed, cancelled)``.
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
MAX_CLAUSES = 20
MAX_DEPTH = 5
MAX_IN = 50
KEY = re.compile(r"[a-z][a-z0-9_]{0,99}")
PARAM_PATH = re.compile(r"[A-Za-z0-9_]{1,64}(?:\.[A-Za-z0-9_]{1,64}){0,7}")
TAG_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

Kind = Literal["metric", "field", "param", "tag"]

_TOKENS = re.compile(
    r"""\s*(?:
        (?P<op>!=|<=|>=|=|<|>)
      | (?P<punct>[(),])
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
    """``key op value``; for ``in``, ``value`` is a tuple. ``key`` is without its prefix (the
    spec path of a param, the tag's key)."""

    key: str
    op: str
    value: float | str | tuple[float | str, ...]
    kind: Kind


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


Node = Clause | And | Or


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
                "expected key op value, clauses joined by 'and' or 'or'"
            )  # fmt: skip
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind), m.start(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str):
        self.tokens = _tokens(text)
        self.i = 0
        self.clauses = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def next(self, expected: str) -> tuple[str, str, int]:
        tok = self.peek()
        if tok is None:
            raise FilterError("filter", f"the filter ends early; expected {expected}")
        self.i += 1
        return tok

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        if tok is not None and tok[0] == "word" and tok[1].lower() == word:
            self.i += 1
            return True
        return False

    def punct(self, char: str) -> bool:
        tok = self.peek()
        if tok is not None and tok[0] == "punct" and tok[1] == char:
            self.i += 1
            return True
        return False

    def expr(self, depth: int) -> Node:
        items = [self.term(depth)]
        while self.keyword("or"):
            items.append(self.term(depth))
        return items[0] if len(items) == 1 else Or(tuple(items))

    def term(self, depth: int) -> Node:
        items = [self.factor(depth)]
        while self.keyword("and"):
            items.append(self.factor(depth))
        return items[0] if len(items) == 1 else And(tuple(items))

    def factor(self, depth: int) -> Node:
        if self.punct("("):
            if depth >= MAX_DEPTH:
                raise FilterError("filter", f"parentheses nest at most {MAX_DEPTH} deep")
            node = self.expr(depth + 1)
            kind, raw, pos = self.next("')'")
            if (kind, raw) != ("punct", ")"):
                raise FilterError("filter", f"expected ')' at position {pos}, got {raw!r}")
            return node
        return self.clause()

    def clause(self) -> Clause:
        kk, key, kpos = self.next("a key")
        if kk != "word":
            raise FilterError("filter", f"expected a key at position {kpos}, got {key!r}")
        kind, name = _key(key, kpos)
        self.clauses += 1
        if self.clauses > MAX_CLAUSES:
            raise FilterError("filter", f"at most {MAX_CLAUSES} clauses")
        if self.keyword("in"):
            return self.in_list(kind, name)
        ok, op, opos = self.next("an operator")
        if ok != "op":
            raise FilterError(
                "filter",
                f"expected an operator ({' '.join(OPS)} or in) at position {opos}, got {op!r}",
            )
        vk, raw, _ = self.next("a value")
        if vk not in ("word", "str", "num"):
            raise FilterError("filter", f"{key} needs a value, got {raw!r}")
        return _clause(kind, name, key, op, _value(kind, name, key, vk, raw))

    def in_list(self, kind: Kind, name: str) -> Clause:
        shown = _shown(kind, name)
        if not self.punct("("):
            raise FilterError("filter", f"{shown} in needs a list: {shown} in (a, b)")
        values: list[float | str] = []
        while True:
            vk, raw, vpos = self.next("a value")
            if vk not in ("word", "str", "num"):
                raise FilterError("filter", f"expected a value at position {vpos}, got {raw!r}")
            values.append(_value(kind, name, shown, vk, raw))
            if len(values) > MAX_IN:
                raise FilterError("filter", f"in takes at most {MAX_IN} values")
            if self.punct(")"):
                break
            if not self.punct(","):
                tok = self.peek()
                got = tok[1] if tok else "the end"
                raise FilterError("filter", f"expected ',' or ')' in the list, got {got!r}")
        kinds = {isinstance(v, float) for v in values}
        if len(kinds) > 1:
            raise FilterError("filter", f"{shown} in (...): all numbers or all text, not both")
        return Clause(name, "in", tuple(values), kind)


def _shown(kind: Kind, name: str) -> str:
    return {"param": f"params.{name}", "tag": f"tags.{name}"}.get(kind, name)


def _key(key: str, pos: int) -> tuple[Kind, str]:
    lowered = key.lower()
    if lowered.startswith("params."):
        path = key[len("params.") :]
        if not PARAM_PATH.fullmatch(path):
            raise FilterError(
                "filter",
                f"{key[:80]!r} at position {pos}: params.<spec path>, e.g. params.model.name or "
                "params.regularizers.l2.strength",
            )
        return "param", path
    if lowered.startswith("tags."):
        tag = key[len("tags.") :]
        if not TAG_KEY.fullmatch(tag):
            raise FilterError("filter", f"{key[:80]!r} at position {pos}: tags.<key>")
        return "tag", tag
    if not KEY.fullmatch(key):
        raise FilterError(
            "filter",
            f"{key[:80]!r} at position {pos} is not a key: use a metric key (lower case, digits, "
            f"_), params.<spec path>, tags.<key> or one of {', '.join(FIELDS)}",
        )
    return ("field" if key in FIELDS else "metric"), key


def _value(kind: Kind, name: str, shown: str, vk: str, raw: str) -> float | str:
    if kind == "metric" or (kind == "param" and vk == "num"):
        if vk != "num":
            raise FilterError(
                "filter", f"{shown} is a metric: compare it with a number, not {raw!r}"
            )
        number = float(raw)
        if not math.isfinite(number):
            raise FilterError("filter", f"{raw} is not a finite number")
        return number
    value = raw[1:-1] if vk == "str" else raw
    if kind == "field" and name == "status" and value not in STATUSES:
        raise FilterError("filter", f"status is one of {', '.join(STATUSES)}, not {value!r}")
    return value


def _clause(kind: Kind, name: str, key: str, op: str, value: float | str) -> Clause:
    numeric = isinstance(value, float)
    if kind in ("field", "tag") and op not in ("=", "!="):
        raise FilterError("filter", f"{key} compares with =, != or in only")
    if kind == "param" and not numeric and op not in ("=", "!="):
        raise FilterError(
            "filter", f"{key} = text compares with =, != or in only (use a number for {op})"
        )
    return Clause(name, op, value, kind)


def parse_filter(text: str | None) -> Node | None:
    if text is None or not text.strip():
        return None
    if len(text) > MAX_LEN:
        raise FilterError("filter", f"at most {MAX_LEN} characters")
    parser = _Parser(text)
    node = parser.expr(0)
    tok = parser.peek()
    if tok is not None:
        kind, word, pos = tok
        raise FilterError(
            "filter", f"expected 'and', 'or' or the end at position {pos}, got {word!r}"
        )
    return node


def clauses(node: Node | None) -> list[Clause]:
    """Every clause of a tree, left to right."""
    if node is None:
        return []
    if isinstance(node, Clause):
        return [node]
    return [c for item in node.items for c in clauses(item)]


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
