"""Uploaded datasets (issue 11): owner-scoped, content-addressed rows.

Reserved slot in the revision chain, filled by the change that needs it (empty until then, so
the chain 0001 -> ... -> 0008 stays linear while several changes land at once).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
