"""Reliability round 2, part 2 (issue 16).

Reserved slot in the revision chain, filled by the change that needs it (empty until then, so
the chain stays linear while several changes land at once).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 14:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
