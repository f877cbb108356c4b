"""The API fixtures of tests/service (a migrated SQLite file and a fresh PostgreSQL database)."""

from tests.service.conftest import client, db_url, sessions, settings  # noqa: F401
from tests.services import new_postgres_database, postgres_admin_url, postgres_url  # noqa: F401
