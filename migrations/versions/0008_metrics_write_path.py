"""Metrics at 50k points/s on PostgreSQL (issue 10 part 4): what each stored point costs the server.

* ``metric_latest``'s index on ``(key, value)`` becomes one on ``key``, and the table is stored
  at fillfactor 50 (PostgreSQL): every epoch updates each of its rows, and an index on
  ``value`` made every such update a non-HOT one (a new entry in both indexes; a 64-member
  pack's 40 epochs grew the table from 23 to 358 pages). With no updated column indexed, and
  half of each page free for the next versions, ~100% of the updates are HOT. Filter and sort
  by a metric (``service.db.search``) reach these rows by the primary key (experiment, key)
  from the experiments they test, or read one metric's rows through ``ix_metric_latest_key``
  and test the value there (as fast as the old index at 10,000 runs of 16 metrics; with no
  index on ``key`` a query took 100 ms).
* ``metrics``' primary key is ``(experiment_id, key, step)``, which was already unique: the
  surrogate ``id`` (and its index, one more btree insert per point) goes.
* ``metrics`` loses its foreign key to ``experiments``: its check ran once per point (an RI
  trigger, ~15% of the server's time per epoch). The write path checks the experiments instead
  (``jobs.record_epochs``: points are written only for the experiments whose lease renewal, in
  the same transaction, matched and locked their row, so a concurrent delete waits for the
  commit). ON DELETE CASCADE is kept by a trigger on ``experiments`` (``experiments_delete_
  metrics``) that deletes a deleted experiment's metrics, on both backends.

  SQLite drops a table's triggers with the table: a later batch migration of ``experiments``
  that recreates it must create this trigger again (tests/worker/test_reporter_ingest.py
  checks the cascade at head, on both backends).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 16:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRIGGER = "experiments_delete_metrics"

_PG_CASCADE = (
    f"CREATE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " DELETE FROM metrics m USING deleted d WHERE m.experiment_id = d.id; RETURN NULL; END $$",
    # one statement per DELETE of experiments, however many rows it deletes
    f"CREATE TRIGGER {TRIGGER} AFTER DELETE ON experiments REFERENCING OLD TABLE AS deleted"
    f" FOR EACH STATEMENT EXECUTE FUNCTION {TRIGGER}()",
)
_SQLITE_CASCADE = (
    f"CREATE TRIGGER {TRIGGER} AFTER DELETE ON experiments FOR EACH ROW BEGIN"
    " DELETE FROM metrics WHERE experiment_id = OLD.id; END",
)


def _postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    with op.batch_alter_table("metric_latest", schema=None) as batch_op:
        batch_op.drop_index("ix_metric_latest_key_value")
        batch_op.create_index("ix_metric_latest_key", ["key"], unique=False)
    if _postgresql():
        # pages written from now on; the existing ones are HOT-updated once pruned
        op.execute("ALTER TABLE metric_latest SET (fillfactor = 50)")

    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.drop_constraint("fk_metrics_experiment_id_experiments", type_="foreignkey")
        batch_op.drop_constraint("uq_metrics_experiment_id_key_step", type_="unique")
        batch_op.drop_constraint("pk_metrics", type_="primary")
        batch_op.drop_column("id")
        batch_op.create_primary_key("pk_metrics", ["experiment_id", "key", "step"])
    for statement in _PG_CASCADE if _postgresql() else _SQLITE_CASCADE:
        op.execute(statement)


def downgrade() -> None:
    if _postgresql():
        op.execute(f"DROP TRIGGER {TRIGGER} ON experiments")
        op.execute(f"DROP FUNCTION {TRIGGER}()")
    else:
        op.execute(f"DROP TRIGGER {TRIGGER}")
    # points no experiment has (written past the write path) would fail the foreign key
    op.execute("DELETE FROM metrics WHERE experiment_id NOT IN (SELECT id FROM experiments)")
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.drop_constraint("pk_metrics", type_="primary")
    if _postgresql():  # numbered from a sequence, as 0001 made it
        op.execute("ALTER TABLE metrics ADD COLUMN id BIGSERIAL NOT NULL")
        with op.batch_alter_table("metrics", schema=None) as batch_op:
            batch_op.create_primary_key("pk_metrics", ["id"])
    else:  # SQLite's INTEGER PRIMARY KEY numbers the copied rows
        with op.batch_alter_table("metrics", schema=None, recreate="always") as batch_op:
            batch_op.add_column(sa.Column("id", sa.Integer(), nullable=False, autoincrement=True))
            batch_op.create_primary_key("pk_metrics", ["id"])
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.create_unique_constraint(
            "uq_metrics_experiment_id_key_step", ["experiment_id", "key", "step"]
        )
        batch_op.create_foreign_key(
            "fk_metrics_experiment_id_experiments",
            "experiments",
            ["experiment_id"],
            ["id"],
            ondelete="CASCADE",
        )

    if _postgresql():
        op.execute("ALTER TABLE metric_latest RESET (fillfactor)")
    with op.batch_alter_table("metric_latest", schema=None) as batch_op:
        batch_op.drop_index("ix_metric_latest_key")
        batch_op.create_index("ix_metric_latest_key_value", ["key", "value"], unique=False)
