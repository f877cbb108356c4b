"""Fixtures of the security tests: the app with auth forced on, keys of two owners, a store with
a secret file beside it, and a guard that no file outside the store changes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import anyio
import pytest
from fastapi.testclient import TestClient

from service.db import api_keys
from service.db.migrate import upgrade_to_head
from service.db.session import make_engine, make_sessionmaker
from service.main import create_app
from service.settings import Settings
from tests.services import new_postgres_database, postgres_admin_url, postgres_url  # noqa: F401

#: TestClient's default Host "testserver" is no loopback name; the API refuses it without a key.
BASE_URL = "http://127.0.0.1"
#: the bytes of a file just outside the store that no request may ever read.
SECRET = b"TOP-SECRET-" + os.urandom(16).hex().encode()


def safetensors_bytes(n: int = 64) -> bytes:
    """A valid safetensors file, built by hand (no torch): one U8 tensor of ``n`` bytes."""
    header = json.dumps({"w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
    return (
        len(header).to_bytes(8, "little")
        + header
        + bytes(range(256)) * (n // 256)
        + bytes(range(n % 256))
    )


def spec(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "security-test",
        "data": {"name": "mnist1d", "n_train": 300, "n_val": 100, "n_test": 100},
        "model": {"name": "mlp", "hidden": [16]},
        "train": {"epochs": 2, "device": "cpu"},
    }
    body.update(over)
    return body


@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite; a test adds PostgreSQL with ``parametrize("db_url", [...], indirect=True)``."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'db' / 'reglab.db'}"
    else:
        url = request.getfixturevalue("new_postgres_database")()
    upgrade_to_head(url)
    return url


def make_settings(db_url: str, tmp_path: Path, **over: Any) -> Settings:
    conf: dict[str, Any] = dict(
        database_url=db_url,
        broker_dir=tmp_path / "broker",
        artifacts=str(tmp_path / "store"),
        cache_dir=tmp_path / "cache",
        max_spec_bytes=8192,
        auth="on",
    )
    conf.update(over)
    return Settings(**conf)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    (tmp_path / "store").mkdir()
    (tmp_path / "secret.safetensors").write_bytes(SECRET)
    return make_settings(db_url, tmp_path)


@pytest.fixture
def app(settings: Settings):
    return create_app(settings)


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app, base_url=BASE_URL, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def sessions(settings: Settings):
    engine = make_engine(settings.database_url)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def keys(sessions) -> dict[str, str]:
    """Bearer tokens: ``ada`` and ``bob`` (two owners), and ``revoked`` (ada's, revoked)."""
    with sessions.begin() as s:
        _, ada = api_keys.create(s, "ada", "laptop")
        _, bob = api_keys.create(s, "bob")
        row, revoked = api_keys.create(s, "ada", "old")
        api_keys.revoke(s, row.id)
    return {"ada": ada, "bob": bob, "revoked": revoked}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def tree(
    root: Path, skip: tuple[str, ...] = ("db", "broker", "store")
) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` but the database's, broker's and store's: size and mtime."""
    out = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if rel.parts and rel.parts[0] in skip:
            continue
        if path.is_file():
            st = path.stat()
            out[str(rel)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture
def untouched(tmp_path: Path, settings: Settings) -> Iterator[None]:
    """Fails the test if a file outside the store (and the database and broker) appeared or
    changed, the secret beside the store included."""
    before = tree(tmp_path)
    yield
    assert tree(tmp_path) == before


def raw_request(
    app, method: str, raw_path: bytes, query: bytes = b"", headers: list | None = None
) -> tuple[int, bytes]:
    """Drive the ASGI app with a path exactly as a server hands it over: ``raw_path`` as sent,
    ``path`` percent-decoded (as uvicorn does), with no client-side dot-segment cleaning."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(raw_path.decode("latin-1")),
        "raw_path": raw_path,
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"127.0.0.1:8000"), *(headers or [])],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict] = []
    delivered = False

    async def receive() -> dict:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await anyio.sleep_forever()  # the client stays connected until the response is sent
        raise AssertionError("unreachable")

    async def send(message: dict) -> None:
        sent.append(message)

    anyio.run(app, scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body
