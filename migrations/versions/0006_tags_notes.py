"""Tags and notes on experiments and sweeps, and experiment_params: each spec's scalars by path,
for filtering by what was run (issue 12).

The params of experiments made before this revision are filled from their stored specs
(``service.db.params.flatten``), so ``filter=params.…`` covers them too.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    for table in ("experiments", "sweeps"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("tags", _JSON, nullable=True))
            batch.add_column(sa.Column("note", sa.Text(), nullable=True))
    op.create_index("ix_experiments_created_at_id", "experiments", ["created_at", "id"])
    params = op.create_table(
        "experiment_params",
        sa.Column("id", _BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("experiment_id", sa.String(length=32), nullable=False),
        sa.Column("path", sa.String(length=200), nullable=False),
        sa.Column("num_value", sa.Float(), nullable=True),
        sa.Column("str_value", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_experiment_params_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiment_params")),
    )
    op.create_index(
        "ix_experiment_params_experiment_path", "experiment_params", ["experiment_id", "path"]
    )
    op.create_index(
        "ix_experiment_params_path_num",
        "experiment_params",
        ["path", "num_value", "experiment_id"],
    )
    op.create_index(
        "ix_experiment_params_path_str",
        "experiment_params",
        ["path", "str_value", "experiment_id"],
    )
    _backfill(params)


def _backfill(params: sa.Table) -> None:
    from service.db.params import rows

    conn = op.get_bind()
    experiments = sa.table("experiments", sa.column("id", sa.String), sa.column("spec", _JSON))
    batch: list[dict] = []
    for eid, spec in conn.execute(sa.select(experiments.c.id, experiments.c.spec)):
        batch.extend(rows(eid, spec or {}))
        if len(batch) >= 5000:
            conn.execute(params.insert(), batch)
            batch = []
    if batch:
        conn.execute(params.insert(), batch)


def downgrade() -> None:
    op.drop_index("ix_experiment_params_path_str", table_name="experiment_params")
    op.drop_index("ix_experiment_params_path_num", table_name="experiment_params")
    op.drop_index("ix_experiment_params_experiment_path", table_name="experiment_params")
    op.drop_table("experiment_params")
    op.drop_index("ix_experiments_created_at_id", table_name="experiments")
    for table in ("sweeps", "experiments"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("note")
            batch.drop_column("tags")
