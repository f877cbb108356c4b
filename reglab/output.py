"""How every command prints: tables that never cut a cell, JSON, and the two consoles.

A table goes to a terminal as a rich table whose cells fold onto more lines when the terminal is
narrow (never an ellipsis; id columns keep their full width), and anywhere else (a pipe, a file,
a test) as tab-separated values with a header line, one row per line, so ``cut``/``awk`` work;
a title is a ``# `` comment line above its table.
``-o json`` prints the API's own JSON: lists as ``{"items": [...]}``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Format = Literal["table", "json", "tsv"]


@dataclass(frozen=True)
class Col:
    header: str
    right: bool = False  # numbers
    whole: bool = False  # ids: never narrowed, never folded


def stderr() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def say(message: str) -> None:
    """A line for the person at the terminal (stderr), rich markup allowed."""
    stderr().print(message)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def num(v: Any) -> str:
    """A value in a cell: floats to 4 significant digits, missing as an em dash."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v).lower()
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def table(
    columns: Sequence[Col | str],
    rows: Sequence[Sequence[Any]],
    title: str | None = None,
    fmt: Format = "table",
) -> None:
    """Print ``rows`` under ``columns``: a rich table on a terminal, else TSV (``fmt="tsv"``
    forces TSV). Cells are printed whole."""
    cols = [c if isinstance(c, Col) else Col(c) for c in columns]
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    if fmt == "tsv" or not sys.stdout.isatty():
        if title:  # a comment line: it separates tables and `grep -v '^#'` drops it
            sys.stdout.write(f"# {_tsv(title)}\n")
        for line in [[c.header for c in cols], *cells]:
            sys.stdout.write("\t".join(_tsv(v) for v in line) + "\n")
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    t = Table(title=title and _escape(title), title_justify="left")
    for i, c in enumerate(cols):
        widest = max([len(c.header), *(len(r[i]) for r in cells)]) if c.whole else None
        t.add_column(
            c.header,
            justify="right" if c.right else "left",
            overflow="fold",
            no_wrap=c.whole,
            min_width=widest,
        )
    for r in cells:
        t.add_row(*(Text(v) for v in r))  # cells are data, never markup
    Console(highlight=False).print(t)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _tsv(value: str) -> str:
    return value.replace("\t", " ").replace("\n", " ")
