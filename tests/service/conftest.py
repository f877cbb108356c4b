"""Fixtures of the API tests: a migrated database on SQLite and on PostgreSQL, and the app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.db.migrate import upgrade_to_head
from service.db.session import make_engine, make_sessionmaker
from service.main import create_app
from service.settings import Settings
from tests.services import new_postgres_database, postgres_admin_url, postgres_url  # noqa: F401

#: TestClient's default Host "testserver" is no loopback name; the API refuses it without a key.
BASE_URL = "http://127.0.0.1"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database migrated to head: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'reglab.db'}"
    else:
        url = request.getfixturevalue("new_postgres_database")()
    upgrade_to_head(url)
    return url


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url,
        broker_dir=tmp_path / "broker",
        artifacts=str(tmp_path / "artifacts"),
        cache_dir=tmp_path / "cache",
        max_spec_bytes=4096,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url=BASE_URL, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def sessions(settings: Settings):
    """Direct database access, for rows the worker would write."""
    engine = make_engine(settings.database_url)
    yield make_sessionmaker(engine)
    engine.dispose()
