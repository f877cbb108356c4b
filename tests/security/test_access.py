"""API keys and ownership: who may call, and whose experiments each caller can see."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.api.auth import auth_required, host_allowed, is_loopback
from service.db import api_keys
from service.db.models import ApiKey, Checkpoint, Experiment, Metric
from service.main import create_app
from tests.security.conftest import (
    BASE_URL,
    bearer,
    make_settings,
    raw_request,
    safetensors_bytes,
    spec,
)

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]


# --- when auth is on ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "host", "expected"),
    [
        ("auto", "127.0.0.1", False),
        ("auto", "localhost", False),
        ("auto", "::1", False),
        ("auto", "[::1]", False),
        ("auto", "127.0.0.5", False),
        ("auto", "0.0.0.0", True),
        ("auto", "::", True),
        ("auto", "192.168.1.7", True),
        ("auto", "example.org", True),
        ("on", "127.0.0.1", True),
        ("off", "0.0.0.0", False),
    ],
)
def test_auth_is_on_whenever_the_server_binds_anything_but_loopback(tmp_path, mode, host, expected):
    conf = make_settings("sqlite://", tmp_path, auth=mode, bind_host=host)
    assert auth_required(conf) is expected


def test_a_request_arriving_on_a_public_address_needs_a_key_even_under_auto_on_loopback(tmp_path):
    """``uvicorn service.main:app --host 0.0.0.0`` bypasses ``reglab serve --host``."""
    conf = make_settings("sqlite://", tmp_path, auth="auto", bind_host="127.0.0.1")
    assert auth_required(conf, {"server": ("10.1.2.3", 8000)})
    assert not auth_required(conf, {"server": ("127.0.0.1", 8000)})
    assert is_loopback("127.0.0.1") and not is_loopback("") and not is_loopback(None)


def test_with_auth_on_only_the_probes_answer_without_a_key(client):
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")  # an orchestrator's probe sends no key
    assert ready.status_code in (200, 503), ready.text
    for method, path in [
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/docs/assets/swagger-ui-bundle.js"),
        ("GET", "/metrics"),
        ("PATCH", f"/v1/experiments/{'a' * 32}"),
        ("GET", "/v1/sweeps"),
        ("GET", "/v1/compare?ids=x"),
        ("GET", "/v1/regularizers"),
        ("GET", "/v1/datasets"),
        ("GET", "/v1/experiments"),
        ("POST", "/v1/experiments"),
        ("GET", f"/v1/experiments/{'a' * 32}"),
        ("POST", f"/v1/experiments/{'a' * 32}/cancel"),
        ("GET", f"/v1/experiments/{'a' * 32}/metrics"),
        ("GET", f"/v1/experiments/{'a' * 32}/checkpoints"),
        ("GET", f"/v1/experiments/{'a' * 32}/checkpoints/{'b' * 32}/file"),
    ]:
        r = client.request(method, path, json=spec() if method == "POST" else None)
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.json()["title"] == "unauthorized"
        assert r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer rlk_not-a-key",
        "Bearer ",
        "Basic YWRhOnB3",
        "rlk_without_scheme",
        "Bearer " + "x" * 5000,
    ],
)
def test_an_unknown_or_malformed_key_is_401(client, keys, header):
    r = client.get("/v1/experiments", headers={"Authorization": header})
    assert r.status_code == 401
    body = r.json()
    assert {"type", "title", "status", "detail"} <= set(body) and "errors" not in body
    assert body["title"] == "unauthorized" and body["status"] == 401
    assert "invalid_token" in r.headers["www-authenticate"]


def test_a_revoked_key_is_401_and_a_live_one_is_200(client, keys):
    assert client.get("/v1/experiments", headers=bearer(keys["revoked"])).status_code == 401
    assert client.get("/v1/experiments", headers=bearer(keys["ada"])).status_code == 200
    assert client.get("/readyz", headers=bearer(keys["ada"])).status_code in (200, 503)
    assert client.get("/openapi.json", headers=bearer(keys["ada"])).status_code == 200


def test_revoking_takes_effect_on_the_next_request(client, keys, sessions):
    assert client.get("/v1/experiments", headers=bearer(keys["bob"])).status_code == 200
    with sessions.begin() as s:
        (bob,) = api_keys.list_keys(s, "bob")
        api_keys.revoke(s, bob.id)
    assert client.get("/v1/experiments", headers=bearer(keys["bob"])).status_code == 401


def test_keys_are_stored_only_as_their_sha256(keys, sessions):
    with sessions() as s:
        stored = {row.key_hash for row in s.scalars(select(ApiKey))}
    for token in keys.values():
        assert token not in stored
        assert hashlib.sha256(token.encode()).hexdigest() in stored
    assert all(len(h) == 64 for h in stored)


def test_keys_are_long_random_and_distinct(sessions):
    with sessions.begin() as s:
        tokens = [api_keys.create(s, "ada")[1] for _ in range(20)]
    assert len(set(tokens)) == 20
    assert all(t.startswith("rlk_") and len(t) >= 40 for t in tokens)


def test_loopback_without_auth_keeps_anonymous_access(db_url, tmp_path, keys):
    conf = make_settings(db_url, tmp_path, auth="auto", bind_host="127.0.0.1")
    with TestClient(create_app(conf), base_url=BASE_URL, raise_server_exceptions=False) as anon:
        created = anon.post("/v1/experiments", json=spec())
        assert created.status_code == 202
        assert anon.get(f"/v1/experiments/{created.json()['id']}").status_code == 200
        # A key, when sent, is still checked, and scopes the caller to its owner.
        assert anon.get("/v1/experiments", headers=bearer("rlk_bogus")).status_code == 401
        mine = anon.get("/v1/experiments", headers=bearer(keys["ada"])).json()["items"]
        assert mine == []


def test_a_bound_public_host_turns_auth_on_under_auto(db_url, tmp_path):
    conf = make_settings(db_url, tmp_path, auth="auto", bind_host="0.0.0.0")
    with TestClient(create_app(conf), base_url=BASE_URL, raise_server_exceptions=False) as c:
        assert c.get("/v1/experiments").status_code == 401
        assert c.get("/healthz").status_code == 200


# --- DNS rebinding: an anonymous request must name loopback -------------------------------------


@pytest.fixture
def loopback_app(db_url, tmp_path):
    """A server on loopback under ``auth=auto``: requests without a key are served."""
    return create_app(make_settings(db_url, tmp_path, auth="auto", bind_host="127.0.0.1"))


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "10.0.0.7", "localhost."])
def test_a_request_without_a_key_naming_a_foreign_host_is_403(loopback_app, sessions, host):
    with TestClient(loopback_app, base_url=BASE_URL, raise_server_exceptions=False) as c:
        listed = c.get("/v1/experiments", headers={"Host": host})
        posted = c.post("/v1/experiments", json=spec(), headers={"Host": host})
        spec_doc = c.get("/openapi.json", headers={"Host": host})
        # the liveness probe stays open, as under auth, and says nothing
        assert c.get("/healthz", headers={"Host": host}).status_code == 200
    for r in (listed, posted, spec_doc):
        assert r.status_code == 403, (host, r.status_code, r.text)
        body = r.json()
        assert body["title"] == "forbidden"
        assert repr(host) in body["detail"] and "REGLAB_ALLOWED_HOSTS" in body["detail"]
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Experiment)) == 0


def test_with_a_key_a_foreign_host_is_judged_by_the_key(loopback_app, keys):
    evil = {"Host": "evil.example"}
    with TestClient(loopback_app, base_url=BASE_URL, raise_server_exceptions=False) as c:
        assert c.get("/v1/experiments", headers=evil | bearer(keys["ada"])).status_code == 200
        assert c.get("/v1/experiments", headers=evil | bearer("rlk_bogus")).status_code == 401
        assert c.get("/v1/experiments", headers=evil | bearer(keys["revoked"])).status_code == 401


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "127.0.0.1:8000", "localhost", "LocalHost:8000", "127.8.9.10:1", "[::1]",
     "[::1]:8000"],
)  # fmt: skip
def test_loopback_hosts_are_served_without_a_key(loopback_app, host):
    with TestClient(loopback_app, base_url=BASE_URL, raise_server_exceptions=False) as c:
        r = c.get("/v1/experiments", headers={"Host": host})
    assert r.status_code == 200, (host, r.text)


@pytest.mark.parametrize(
    "header",
    [("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-Host", "lab.example.org"),
     ("X-Real-IP", "203.0.113.9"), ("Forwarded", "for=203.0.113.9;proto=https"),
     ("x-forwarded-for", "127.0.0.1")],
)  # fmt: skip
def test_a_request_through_a_reverse_proxy_needs_a_key_under_auto(loopback_app, keys, header):
    """A proxy on the same host delivers every request from loopback with a loopback Host; the
    headers it adds give it away, so the stranger behind it is not served anonymously."""
    proxied = dict([header]) | {"Host": "127.0.0.1:8000"}
    with TestClient(loopback_app, base_url=BASE_URL, raise_server_exceptions=False) as c:
        refused = c.get("/v1/experiments", headers=proxied)
        posted = c.post("/v1/experiments", json=spec(), headers=proxied)
        with_key = c.get("/v1/experiments", headers=proxied | bearer(keys["ada"]))
        direct = c.get("/v1/experiments", headers={"Host": "127.0.0.1:8000"})
        health = c.get("/healthz", headers=proxied)
    assert (refused.status_code, posted.status_code) == (401, 401)
    assert "API key" in refused.json()["detail"]
    assert with_key.status_code == 200 and direct.status_code == 200
    assert health.status_code == 200


def test_proxy_headers_turn_auth_on_only_under_auto(tmp_path):
    scope = {"headers": [(b"x-forwarded-for", b"203.0.113.9")], "server": ("127.0.0.1", 8000)}
    plain = {"headers": [(b"host", b"127.0.0.1")], "server": ("127.0.0.1", 8000)}
    auto = make_settings("sqlite://", tmp_path, auth="auto", bind_host="127.0.0.1")
    off = make_settings("sqlite://", tmp_path, auth="off", bind_host="127.0.0.1")
    assert auth_required(auto, scope) and not auth_required(auto, plain)
    assert not auth_required(off, scope)


def test_a_request_without_any_host_header_is_403(loopback_app):
    async def without_host(scope, receive, send):
        scope = dict(scope, headers=[(k, v) for k, v in scope["headers"] if k != b"host"])
        await loopback_app(scope, receive, send)

    with TestClient(loopback_app, base_url=BASE_URL):  # runs the lifespan
        assert raw_request(loopback_app, "GET", b"/v1/experiments")[0] == 200
        status, body = raw_request(without_host, "GET", b"/v1/experiments")
    assert status == 403 and b"no Host header" in body


def test_allowed_hosts_extend_loopback_from_a_comma_list(monkeypatch, db_url, tmp_path):
    monkeypatch.setenv("REGLAB_ALLOWED_HOSTS", "lab.internal, Box.Local:8000")
    conf = make_settings(db_url, tmp_path, auth="auto", bind_host="127.0.0.1")
    assert conf.allowed_hosts == ["lab.internal", "Box.Local:8000"]
    with TestClient(create_app(conf), base_url=BASE_URL, raise_server_exceptions=False) as c:
        for host, status in [
            ("lab.internal", 200), ("lab.internal:9000", 200), ("box.local", 200),
            ("evil.example", 403), ("internal", 403), ("x.lab.internal", 403),
        ]:  # fmt: skip
            assert c.get("/v1/experiments", headers={"Host": host}).status_code == status, host


@pytest.mark.parametrize(
    ("host", "allowed", "expected"),
    [
        ("127.0.0.1", [], True),
        ("[::1]:80", [], True),
        ("::1", [], False),  # an IPv6 Host must be bracketed
        ("127.0.0.1:http", [], False),
        ("[::1]junk", [], False),
        ("", [], False),
        (None, [], False),
        ("evil.example", ["*"], True),
        ("evil.example:1", ["evil.example:2"], True),  # entries name hosts; ports do not count
    ],
)
def test_host_allowed_parses_the_host_header_strictly(host, allowed, expected):
    assert host_allowed(host, allowed) is expected


# --- ownership ---------------------------------------------------------------------------------


def _submit(client, token: str, **over) -> str:
    r = client.post("/v1/experiments", json=spec(**over), headers=bearer(token))
    assert r.status_code == 202, r.text
    return r.json()["id"]


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_another_owners_experiment_answers_404_on_every_route(client, keys, sessions):
    eid = _submit(client, keys["ada"])
    payload = safetensors_bytes()
    with sessions.begin() as s:
        s.add(Metric(experiment_id=eid, key="train_loss", step=1, value=0.5))
        s.add(
            Checkpoint(
                id="c" * 32, experiment_id=eid, kind="last", epoch=1, uri=f"{eid}/w.safetensors",
                size=len(payload), sha256=hashlib.sha256(payload).hexdigest(),
            )
        )  # fmt: skip
    store = Path(client.app.state.settings.artifacts)
    (store / eid).mkdir(parents=True)
    (store / eid / "w.safetensors").write_bytes(payload)
    routes = [
        ("GET", f"/v1/experiments/{eid}"),
        ("GET", f"/v1/experiments/{eid}/metrics"),
        ("GET", f"/v1/experiments/{eid}/checkpoints"),
        ("GET", f"/v1/experiments/{eid}/checkpoints/{'c' * 32}/file"),
        ("POST", f"/v1/experiments/{eid}/cancel"),
    ]
    for method, path in routes:
        r = client.request(method, path, headers=bearer(keys["bob"]))
        assert r.status_code == 404, (path, r.text)
        assert r.json()["detail"] == f"experiment {eid} does not exist"
        assert r.json()["title"] == "not found"
    # Bob's cancel did nothing; Ada still sees and reaches everything.
    for method, path in routes[:4]:
        assert client.request(method, path, headers=bearer(keys["ada"])).status_code == 200, path
    with sessions() as s:
        row = s.get(Experiment, eid)
        assert row.status == "queued" and not row.cancel_requested and row.owner == "ada"


def test_list_shows_only_the_callers_own_experiments(client, keys):
    ada = {_submit(client, keys["ada"], name="shared-name") for _ in range(3)}
    bob = {_submit(client, keys["bob"], name="shared-name") for _ in range(2)}
    for token, own in ((keys["ada"], ada), (keys["bob"], bob)):
        seen: set[str] = set()
        cursor = None
        while True:
            params = {"limit": 1, "name": "shared-name"} | ({"cursor": cursor} if cursor else {})
            page = client.get("/v1/experiments", params=params, headers=bearer(token)).json()
            seen |= {item["id"] for item in page["items"]}
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == own


def test_idempotency_keys_are_per_owner(client, keys):
    headers_a = bearer(keys["ada"]) | {"Idempotency-Key": "same"}
    headers_b = bearer(keys["bob"]) | {"Idempotency-Key": "same"}
    a = client.post("/v1/experiments", json=spec(), headers=headers_a).json()["id"]
    b = client.post("/v1/experiments", json=spec(seed=3), headers=headers_b)
    assert b.status_code == 202 and b.json()["id"] != a
    again = client.post("/v1/experiments", json=spec(), headers=headers_a)
    assert again.json()["id"] == a


def test_anonymous_rows_are_not_visible_to_a_keyed_owner(db_url, tmp_path, keys):
    conf = make_settings(db_url, tmp_path, auth="off")
    with TestClient(create_app(conf), base_url=BASE_URL, raise_server_exceptions=False) as c:
        anon = c.post("/v1/experiments", json=spec()).json()["id"]
        assert c.get(f"/v1/experiments/{anon}", headers=bearer(keys["ada"])).status_code == 404
        assert c.get(f"/v1/experiments/{anon}").status_code == 200


# --- the CLI -----------------------------------------------------------------------------------


def _reglab(*args: str, db: str) -> subprocess.CompletedProcess:
    env = os.environ | {"REGLAB_DATABASE_URL": db}
    return subprocess.run(
        [sys.executable, "-m", "reglab.cli", "keys", *args],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
    )  # fmt: skip


def test_reglab_keys_create_list_revoke(tmp_path):
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    made = _reglab("create", "--owner", "ada", "--name", "ci", db=db)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("rlk_") and "\n" not in token
    listed = _reglab("list", db=db)
    assert listed.returncode == 0 and "ada" in listed.stdout and token not in listed.stdout
    conf = make_settings(db, tmp_path, auth="on")
    with TestClient(create_app(conf), base_url=BASE_URL, raise_server_exceptions=False) as c:
        assert c.get("/v1/experiments", headers=bearer(token)).status_code == 200
        from service.db.session import make_engine, make_sessionmaker

        engine = make_engine(db)
        with make_sessionmaker(engine)() as s:
            (key_id,) = [k.id for k in api_keys.list_keys(s, "ada")]
        engine.dispose()
        revoked = _reglab("revoke", key_id, db=db)
        assert revoked.returncode == 0, revoked.stderr
        assert c.get("/v1/experiments", headers=bearer(token)).status_code == 401
    assert _reglab("revoke", "f" * 32, db=db).returncode == 1
    assert _reglab("create", "--owner", "", db=db).returncode == 2
