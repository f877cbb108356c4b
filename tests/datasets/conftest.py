"""The API fixtures of tests/service (a migrated SQLite and PostgreSQL database, the app), and
an app with auth on and two owners' keys."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service.db import api_keys
from service.main import create_app
from tests.service.conftest import (  # noqa: F401
    BASE_URL,
    client,
    db_url,
    sessions,
    settings,
)
from tests.services import new_postgres_database, postgres_admin_url, postgres_url  # noqa: F401


@pytest.fixture
def owners(settings, sessions) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:  # noqa: F811
    """A client of the app with auth on, and the headers of two owners, ada and bob."""
    with sessions.begin() as s:
        _, ada = api_keys.create(s, "ada", "laptop")
        _, bob = api_keys.create(s, "bob")
    app = create_app(settings.model_copy(update={"auth": "on"}))
    with TestClient(app, base_url=BASE_URL, raise_server_exceptions=False) as c:
        yield c, {n: {"Authorization": f"Bearer {t}"} for n, t in (("ada", ada), ("bob", bob))}


from tests.integration.conftest import redis_broker, stack, workers  # noqa: E402, F401
