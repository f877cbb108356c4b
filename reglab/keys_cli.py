"""``reglab keys create|revoke|list``: API keys, straight against the database.

Only whoever can reach the database makes keys: there is no HTTP route that mints one. The token
is printed once, on stdout alone (so ``KEY=$(reglab keys create --owner ada)`` works); only its
SHA-256 is stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from reglab.common import Output, fail
from reglab.output import Col, say

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy.orm import Session

keys = typer.Typer(help="API keys: create, revoke, list.", no_args_is_help=True)


@contextmanager
def _session() -> Iterator[Session]:
    from service.db.migrate import MigrationError, upgrade_to_head
    from service.db.session import make_engine, make_sessionmaker
    from service.settings import get_settings

    url = get_settings().database_url
    try:
        upgrade_to_head(url)
    except MigrationError as exc:
        fail(str(exc), 2)
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine).begin() as session:
            yield session
    finally:
        engine.dispose()


@keys.command("create")
def create(
    owner: Annotated[str, typer.Option(help="who the key acts for; owns what it submits")],
    name: Annotated[str, typer.Option(help="a label to tell keys apart")] = "",
) -> None:
    """Create a key and print it (once: only its hash is stored)."""
    from service.db import api_keys

    owner = owner.strip()
    if not owner or len(owner) > 64 or not owner.isprintable():
        fail("--owner must be 1 to 64 printable characters", 2)
    with _session() as session:
        row, token = api_keys.create(session, owner, name)
        key_id = row.id
    say(f"key {key_id} for owner {owner!r}; store it now, it is not shown again:")
    print(token)


@keys.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="the key's id (from `reglab keys list`)")]):
    """Revoke a key: requests with it answer 401 from now on."""
    from service.db import api_keys

    with _session() as session:
        row = api_keys.revoke(session, key_id)
        if row is None:
            fail(f"no key with id {key_id!r}", 1)
        owner = row.owner
    say(f"revoked key {key_id} of {owner!r}")


@keys.command("list")
def list_(
    owner: Annotated[str | None, typer.Option(help="only this owner's keys")] = None,
    output: Output = "table",
):
    """The keys: id, owner, label, created, revoked (never the token)."""
    from reglab.output import print_json, table
    from service.db import api_keys

    with _session() as session:
        rows = [
            (r.id, r.owner, r.name, r.created_at.isoformat(timespec="seconds"),
             r.revoked_at.isoformat(timespec="seconds") if r.revoked_at else "")
            for r in api_keys.list_keys(session, owner)
        ]  # fmt: skip
    if output == "json":
        names = ("id", "owner", "name", "created_at", "revoked_at")
        print_json({"items": [dict(zip(names, r, strict=True)) for r in rows]})
        return
    table([Col("id", whole=True), "owner", "name", "created", "revoked"], rows, fmt=output)
