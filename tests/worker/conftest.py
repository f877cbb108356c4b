"""Fixtures of the worker tests: databases on both backends."""

import pytest

from service.db.migrate import upgrade_to_head
from service.db.session import make_engine, make_sessionmaker
from tests.services import new_postgres_database, postgres_admin_url, postgres_url  # noqa: F401


@pytest.fixture(params=["sqlite", "postgresql"])
def sessions(request, tmp_path):
    """A session factory on a migrated database: SQLite, then PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'worker.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    upgrade_to_head(url)
    engine = make_engine(url)
    yield make_sessionmaker(engine)
    engine.dispose()
