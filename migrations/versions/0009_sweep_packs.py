"""Sweep packing (issue 10 part 3).

Reserved slot in the revision chain, filled by the change that needs it (empty until then, so
the chain stays linear while several changes land at once).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 14:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
