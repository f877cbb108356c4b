"""Availability of the real PostgreSQL and Redis for the service, worker and integration tests.

Outside CI a missing server skips the tests that need it; under ``CI=true`` it fails them, so a
broken CI environment can never pass by skipping. Import the fixtures into a ``conftest.py``:
``from tests.services import postgres_url, redis_url  # noqa: F401``.

- ``postgres_admin_url``: the server's base URL (``REGLAB_TEST_POSTGRES_URL``, default the
  ``test`` database on 127.0.0.1:5432).
- ``new_postgres_database``: a factory; each call creates an empty database of its own (dropped
  at the end of the session), so tests never see each other's tables.
- ``postgres_url``: one such fresh, empty database per test.
- ``redis_url``: Redis DB 15 (``REGLAB_TEST_REDIS_URL``), flushed before each test.
- ``sessions``: a session factory on a migrated database, once on SQLite, once on PostgreSQL
  (import ``postgres_url`` beside it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get(
    "REGLAB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("REGLAB_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def unavailable(reason: str) -> None:
    """Skip, or under CI fail: the real services are part of what CI must test."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: the real service is required)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "not there"
        shown = make_url(POSTGRES_URL).render_as_string(hide_password=True)
        unavailable(f"PostgreSQL at {shown} is not reachable: {type(exc).__name__}")
    finally:
        engine.dispose()
    return POSTGRES_URL


@pytest.fixture(scope="session")
def new_postgres_database(postgres_admin_url: str) -> Iterator[Callable[[], str]]:
    admin = create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    created: list[str] = []

    def create() -> str:
        name = f"reglab_test_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)

    yield create
    with admin.connect() as conn:
        for name in created:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def postgres_url(new_postgres_database: Callable[[], str]) -> str:
    return new_postgres_database()


@pytest.fixture
def redis_url() -> str:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001
        unavailable(f"Redis at {REDIS_URL} is not reachable: {type(exc).__name__}")
    client.flushdb()
    client.close()
    return REDIS_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A session factory on a migrated database: SQLite, then PostgreSQL."""
    from service.db.migrate import upgrade_to_head
    from service.db.session import make_engine, make_sessionmaker

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    upgrade_to_head(url)
    engine = make_engine(url)
    yield make_sessionmaker(engine)
    engine.dispose()
