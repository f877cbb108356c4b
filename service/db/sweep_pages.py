"""Pages of a user's sweeps, newest first, by cursor (``service.db.paging``)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.models import Sweep
from service.db.paging import Page, SortKey, page

KEYS = (SortKey(Sweep.created_at, True, "t"), SortKey(Sweep.id, True, "s"))


def sweeps_page(session: Session, owner: str | None, limit: int, cursor: str | None) -> Page:
    stmt = select(Sweep)
    if owner is not None:
        stmt = stmt.where(Sweep.owner == owner)
    return page(session, stmt, KEYS, limit, cursor)
