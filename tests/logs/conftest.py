"""Fixtures of the run-log tests: a migrated database on each backend (seq assignment relies on
UPDATE ... RETURNING), from ``tests.services``."""

from tests.services import (  # noqa: F401
    new_postgres_database,
    postgres_admin_url,
    postgres_url,
    sessions,
)
