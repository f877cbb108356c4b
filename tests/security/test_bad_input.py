"""Hostile input gets a 4xx, reads no file outside the store, writes none, and runs nothing.

Paths are sent raw to the ASGI app (``raw_request``): an HTTP client would clean ``../`` out of
a URL before it left, and a real attacker's client does not.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from service.artifacts import ArtifactKeyError, open_store, parse_s3_location, validate_key
from service.db.models import Checkpoint, Experiment
from tests.security.conftest import SECRET, bearer, raw_request, safetensors_bytes, spec

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("untouched")]

#: on the wire, as an attacker would type them into a path segment.
TRAVERSALS = [
    b"../",
    b"..",
    b"..\\",
    b"..%5c..%5csecret.safetensors",
    b"%2e%2e%2f",
    b"%2e%2e%2f%2e%2e%2fsecret.safetensors",
    b"%252e%252e%252f",
    b"%252e%252e%252fsecret.safetensors",
    b"../../secret.safetensors",
    b"..%2f..%2f..%2fetc%2fpasswd",
    b"/etc/passwd",
    b"%2fetc%2fpasswd",
    b"file:///etc/passwd",
    b"file:%2f%2f%2fetc%2fpasswd",
    b"//proc/self/root",
    b"%2f%2fproc%2fself%2froot%2fetc%2fpasswd",
    b"%00",
    b"abc%00.safetensors",
    b"a" * 4096,
    b"%C0%AE%C0%AE%2f",  # overlong UTF-8 dots
]


def _experiment_with_checkpoint(client, sessions, token: str, uri: str | None = None) -> str:
    r = client.post("/v1/experiments", json=spec(), headers=bearer(token))
    eid = r.json()["id"]
    payload = safetensors_bytes()
    key = uri or f"{eid}/checkpoints/last.safetensors"
    with sessions.begin() as s:
        s.add(
            Checkpoint(
                id="c" * 32, experiment_id=eid, kind="last", epoch=1, uri=key,
                size=len(payload), sha256=hashlib.sha256(payload).hexdigest(),
            )
        )  # fmt: skip
    if uri is None:
        path = Path(client.app.state.settings.artifacts) / key
        path.parent.mkdir(parents=True)
        path.write_bytes(payload)
    return eid


def _assert_refused(status: int, body: bytes, what: Any) -> None:
    assert 400 <= status < 500, (what, status, body[:200])
    assert SECRET not in body and b"root:" not in body, what
    assert b"Traceback" not in body, what


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_path_traversal_in_every_id_and_path_parameter_is_refused(client, keys, sessions):
    eid = _experiment_with_checkpoint(client, sessions, keys["ada"])
    auth = [(b"authorization", f"Bearer {keys['ada']}".encode())]
    cid = b"c" * 32
    templates = [
        ("GET", b"/v1/experiments/%s"),
        ("POST", b"/v1/experiments/%s/cancel"),
        ("GET", b"/v1/experiments/%s/metrics"),
        ("GET", b"/v1/experiments/%s/checkpoints"),
        ("GET", b"/v1/experiments/%s/checkpoints/" + cid + b"/file"),
        ("GET", b"/v1/experiments/" + eid.encode() + b"/checkpoints/%s/file"),
        ("GET", b"/v1/experiments/" + eid.encode() + b"/checkpoints/%s"),
    ]
    for method, template in templates:
        for evil in TRAVERSALS:
            status, body = raw_request(client.app, method, template % evil, headers=auth)
            _assert_refused(status, body, (method, template % evil))
    # The real checkpoint is still served, and its experiment was not cancelled by any of that.
    status, body = raw_request(
        client.app,
        "GET",
        f"/v1/experiments/{eid}/checkpoints/{'c' * 32}/file".encode(),
        headers=auth,
    )
    assert status == 200 and body == safetensors_bytes()
    with sessions() as s:
        assert s.get(Experiment, eid).status == "queued"


@pytest.mark.parametrize(
    "uri",
    [
        "../secret.safetensors",
        "x/../../secret.safetensors",
        "..\\secret.safetensors",
        "/SECRET_PATH",
        "file:///SECRET_PATH",
        "//SECRET_PATH",
        "s3://bucket/../secret.safetensors",
        "./secret.safetensors",
        "a" * 400 + ".safetensors",
    ],
)
def test_a_stored_checkpoint_key_that_escapes_the_store_is_never_served(
    client, keys, sessions, tmp_path, uri
):
    uri = uri.replace("/SECRET_PATH", str(tmp_path / "secret.safetensors"))
    eid = _experiment_with_checkpoint(client, sessions, keys["ada"], uri=uri)
    r = client.get(
        f"/v1/experiments/{eid}/checkpoints/{'c' * 32}/file", headers=bearer(keys["ada"])
    )
    _assert_refused(r.status_code, r.content, uri)
    assert r.status_code == 404


@pytest.mark.parametrize(
    "key",
    [
        "../x", "a/../../x", "/etc/passwd", "file:///etc/passwd", "//proc/self/root", "a\\..\\b",
        "a\x00b", "", ".", "a/./b", "%2e%2e/x", "a" * 4096 + "/../x",
    ],
)  # fmt: skip
def test_artifact_keys_that_could_leave_the_store_are_refused(key):
    with pytest.raises(ArtifactKeyError):
        validate_key(key)


@pytest.mark.parametrize(
    "location",
    ["s3://bucket/../x", "s3://bucket/a/../../x", "s3://../x", "s3:///x", "s3://b/%00", "s3://a"],
)
def test_an_s3_artifact_location_with_dot_dot_is_refused(location):
    with pytest.raises(ArtifactKeyError):
        parse_s3_location(location)
    with pytest.raises(ArtifactKeyError):
        open_store(location)


def test_a_valid_s3_location_parses_to_bucket_and_prefix():
    assert parse_s3_location("s3://my-bucket/runs/prod/") == ("my-bucket", "runs/prod")
    assert parse_s3_location("s3://my-bucket") == ("my-bucket", "")


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("name", "a\x00b"),
        ("name", "../../etc/passwd"),
        ("name", "x" * 4096),
        ("cursor", "Li4vLi4vZXRjL3Bhc3N3ZA"),  # base64 of ../../etc/passwd
        ("cursor", "MjAyNi0wMS0wMXwAAAA"),  # a date, then NUL bytes as the id
        ("cursor", "../../etc/passwd"),
        ("status", "../queued"),
    ],
)
def test_query_parameters_never_reach_the_database_unchecked(client, keys, param, value):
    r = client.get("/v1/experiments", params={param: value}, headers=bearer(keys["ada"]))
    assert r.status_code < 500, r.text
    if "\x00" in value or len(value) > 200 or param in ("cursor", "status"):
        assert r.status_code == 422, r.text
    else:
        assert r.status_code == 200 and r.json()["items"] == []


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_a_nul_byte_in_metric_keys_is_422(client, keys, sessions):
    eid = _experiment_with_checkpoint(client, sessions, keys["ada"])
    r = client.get(
        f"/v1/experiments/{eid}/metrics", params={"keys": "a\x00b"}, headers=bearer(keys["ada"])
    )
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "keys"


# --- bodies ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        None,
    ],
)
def test_json_routes_sent_text_or_form_bodies_are_415(client, keys, sessions, content_type):
    headers = bearer(keys["ada"]) | ({"content-type": content_type} if content_type else {})
    r = client.post("/v1/experiments", content=json.dumps(spec()), headers=headers)
    assert r.status_code == 415 and r.json()["title"] == "unsupported media type"
    with sessions() as s:
        assert s.query(Experiment).count() == 0


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_cancel_sent_a_form_or_text_body_is_415_and_cancels_nothing(
    client, keys, sessions, content_type
):
    eid = _experiment_with_checkpoint(client, sessions, keys["ada"])
    r = client.post(
        f"/v1/experiments/{eid}/cancel",
        content=b"x=1",
        headers=bearer(keys["ada"]) | {"content-type": content_type},
    )
    assert r.status_code == 415
    with sessions() as s:
        assert s.get(Experiment, eid).status == "queued"
    ok = client.post(f"/v1/experiments/{eid}/cancel", headers=bearer(keys["ada"]))
    assert ok.status_code == 200 and ok.json()["status"] == "cancelled"


def test_an_oversized_spec_is_413(client, keys, settings, sessions):
    big = spec(name="x" * 200)
    big["padding"] = "y" * (settings.max_spec_bytes + 1)
    body = json.dumps(big).encode()
    r = client.post(
        "/v1/experiments",
        content=body,
        headers=bearer(keys["ada"]) | {"content-type": "application/json"},
    )
    assert r.status_code == 413

    def chunks():  # no Content-Length: the limit holds while streaming too
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    r = client.post(
        "/v1/experiments",
        content=chunks(),
        headers=bearer(keys["ada"]) | {"content-type": "application/json"},
    )
    assert r.status_code == 413
    with sessions() as s:
        assert s.query(Experiment).count() == 0


NUMERIC_FIELDS = [
    ("seed", lambda v: spec(seed=v)),
    ("train.epochs", lambda v: spec(train={"epochs": v})),
    ("train.lr", lambda v: spec(train={"lr": v})),
    ("train.batch_size", lambda v: spec(train={"batch_size": v})),
    ("data.n_train", lambda v: spec(data={"name": "mnist1d", "n_train": v})),
    ("data.label_noise", lambda v: spec(data={"name": "mnist1d", "label_noise": v})),
    ("model.hidden[0]", lambda v: spec(model={"name": "mlp", "hidden": [v]})),
    ("regularizers[0].strength", lambda v: spec(regularizers=[{"name": "l2", "strength": v}])),
    ("regularizers[0].p", lambda v: spec(regularizers=[{"name": "dropout", "p": v}])),
]
SENTINEL = 123456789


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e309", "-1e309", str(2**63)])
@pytest.mark.parametrize(("field", "build"), NUMERIC_FIELDS, ids=[f for f, _ in NUMERIC_FIELDS])
def test_non_finite_and_out_of_range_numbers_are_422(client, keys, sessions, token, field, build):
    raw = json.dumps(build(SENTINEL)).replace(str(SENTINEL), token)
    assert token in raw
    r = client.post(
        "/v1/experiments",
        content=raw,
        headers=bearer(keys["ada"]) | {"content-type": "application/json"},
    )
    assert r.status_code == 422, (field, token, r.text)
    assert r.json()["title"] in ("invalid JSON", "invalid spec")
    with sessions() as s:
        assert s.query(Experiment).count() == 0


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize(
    "raw_name", ['"a\\u0000b"', '"\\ud800"', '"x\\udfff"'], ids=["nul", "high-surrogate", "low"]
)
def test_text_no_database_can_store_is_422_not_500(client, keys, sessions, raw_name):
    raw = json.dumps(spec(name="PLACEHOLDER")).replace('"PLACEHOLDER"', raw_name)
    r = client.post(
        "/v1/experiments",
        content=raw,
        headers=bearer(keys["ada"]) | {"content-type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == "name"
    with sessions() as s:
        assert s.query(Experiment).count() == 0


def test_a_deeply_nested_body_is_422(client, keys):
    raw = "[" * 5000 + "]" * 5000
    r = client.post(
        "/v1/experiments",
        content=raw,
        headers=bearer(keys["ada"]) | {"content-type": "application/json"},
    )
    assert r.status_code in (413, 422)


@pytest.mark.parametrize("value", ["a\x01b", "é", "x" * 201])
def test_an_odd_idempotency_key_is_refused_cleanly(client, keys, value):
    headers = bearer(keys["ada"]) | {"Idempotency-Key": value}
    try:
        r = client.post("/v1/experiments", json=spec(), headers=headers)
    except Exception:  # noqa: BLE001 - the HTTP client itself refuses to send some bytes
        return
    assert r.status_code == 422, r.text
