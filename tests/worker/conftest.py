"""Fixtures of the worker tests: databases on both backends (``tests.services``)."""

from tests.services import (  # noqa: F401
    new_postgres_database,
    postgres_admin_url,
    postgres_url,
    sessions,
)
