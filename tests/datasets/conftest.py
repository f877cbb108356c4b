"""The API fixtures of tests/service (a migrated SQLite and PostgreSQL database, the app)."""

from tests.service.conftest import (  # noqa: F401
    BASE_URL,
    client,
    db_url,
    sessions,
    settings,
)
from tests.services import new_postgres_database, postgres_admin_url, postgres_url  # noqa: F401
