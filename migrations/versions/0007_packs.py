"""Metrics at pack rate, and the workers' heartbeat table (issues 10 and 12).

* ``metrics`` loses ``ix_metrics_experiment_key_step``: the unique constraint on the same
  columns is already an index, and keeping both doubled the index work of every point written.
* ``worker_heartbeats``: each worker process's row (its queues, when it was last alive), so the
  reconciler can tell a queue nobody consumes: such a run says why it waits, and its message is
  not sent again and again.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.drop_index("ix_metrics_experiment_key_step")
    op.create_table(
        "worker_heartbeats",
        sa.Column("worker", sa.String(length=200), nullable=False),
        sa.Column("queues", sa.String(length=500), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("worker", name=op.f("pk_worker_heartbeats")),
    )


def downgrade() -> None:
    op.drop_table("worker_heartbeats")
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.create_index(
            "ix_metrics_experiment_key_step", ["experiment_id", "key", "step"], unique=False
        )
