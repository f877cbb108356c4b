"""What every command that talks to the API shares: its options, the client, reading JSON files,
and turning a client error into a message and an exit status (2 for bad input, 1 otherwise).

Imports stay light (typer only): ``reglab --help`` loads this module.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn

import typer

if TYPE_CHECKING:  # pragma: no cover
    from reglab.client import RegLabClient, RegLabError

ApiUrl = Annotated[
    str | None, typer.Option("--api-url", envvar="REGLAB_API_URL", help="the RegLab API")
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="REGLAB_API_KEY",
        help="API key sent as 'Authorization: Bearer <key>' (needed when auth is on)",
        show_default=False,
    ),
]
Output = Annotated[
    Literal["table", "json", "tsv"],
    typer.Option(
        "--output",
        "-o",
        help="table (TSV when stdout is not a terminal), json, or tsv",
        case_sensitive=False,
    ),
]


def fail(message: str, code: int = 1) -> NoReturn:
    from rich.markup import escape

    from reglab.output import say

    say(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


def read_json(path: Path) -> Any:
    """The JSON in ``path``; exits 2 with a clear message when it is missing or malformed."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        fail(f"file not found: {path}", 2)
    except json.JSONDecodeError as exc:
        fail(f"{path} is not valid JSON: {exc}", 2)


def invalid_lines(exc: Any) -> str:
    """A 422's field errors, one ``  field: message`` line each."""
    lines = [f"  {e['loc']}: {e['msg']}" if e["loc"] else f"  {e['msg']}" for e in exc.errors]
    return "\n".join(lines) or f"  {exc.describe()}"


def describe(exc: RegLabError) -> str:
    """The error, with how to send a key when the server wants one."""
    from reglab.client import RegLabAPIError

    if isinstance(exc, RegLabAPIError) and exc.status == 401:
        return f"{exc}\n(pass --api-key KEY or set REGLAB_API_KEY; `reglab keys create` makes one)"
    return str(exc)


def make_client(api_url: str | None, api_key: str | None) -> RegLabClient:
    """The client the commands use (tests replace it with one on an in-process app)."""
    from reglab.client import RegLabClient

    return RegLabClient(api_url, api_key)


@contextmanager
def api(api_url: str | None, api_key: str | None, what: str = "request") -> Iterator[RegLabClient]:
    """A client; any client error inside the block exits with its message (a 422 with its
    field lines and status 2, an ambiguous id prefix with 2 as well; anything else 1)."""
    from reglab.client import AmbiguousIdError, InvalidSpecError, RegLabError

    try:
        with make_client(api_url, api_key) as client:
            yield client
    except InvalidSpecError as exc:
        fail(f"invalid {what}:\n{invalid_lines(exc)}", 2)
    except AmbiguousIdError as exc:
        fail(str(exc), 2)
    except RegLabError as exc:
        fail(describe(exc), 1)
