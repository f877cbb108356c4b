"""The API tests reuse the service fixtures: SQLite and PostgreSQL, the app, direct sessions."""

from __future__ import annotations

from typing import Any

from tests.service.conftest import BASE_URL, client, db_url, sessions, settings  # noqa: F401
from tests.services import new_postgres_database, postgres_admin_url, postgres_url  # noqa: F401


def spec(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "api-test",
        "data": {"name": "mnist1d", "n_train": 300, "n_val": 100, "n_test": 100},
        "model": {"name": "mlp", "hidden": [32]},
        "train": {"epochs": 3, "device": "cpu"},
        "regularizers": [{"name": "l2", "strength": 0.001}, {"name": "dropout", "p": 0.5}],
    }
    body.update(over)
    return body


def submit(api, body: dict[str, Any] | None = None, **headers: str) -> dict[str, Any]:
    r = api.post("/v1/experiments", json=body or spec(), headers=headers)
    assert r.status_code == 202, r.text
    return r.json()
