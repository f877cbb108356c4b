"""Checkpoints in an S3-compatible store are listed and served by the API (boto3 faked)."""

from __future__ import annotations

import hashlib
import io
import json

import pytest

from service.artifacts import ArtifactStoreError, S3ReadStore, open_store
from service.db.models import Checkpoint
from tests.service.test_api import submit


class FakeS3:
    """The four calls the read side makes, on a dict."""

    def __init__(self, objects: dict[tuple[str, str], bytes]):
        self.objects = objects

    def get_object(self, Bucket, Key):  # noqa: N803 - boto3's names
        return {"Body": io.BytesIO(self.objects[Bucket, Key])}

    def head_object(self, Bucket, Key):  # noqa: N803
        if (Bucket, Key) not in self.objects:
            err = Exception("not found")
            err.response = {"Error": {"Code": "404"}}  # type: ignore[attr-defined]
            raise err
        return {"ContentLength": len(self.objects[Bucket, Key])}


def _safetensors_bytes() -> bytes:
    data = bytes(range(64))
    header = json.dumps({"w": {"dtype": "U8", "shape": [64], "data_offsets": [0, 64]}})
    return len(header).to_bytes(8, "little") + header.encode() + data


def test_open_store_reads_s3_locations_and_refuses_escapes():
    store = open_store("s3://bucket/runs/prod")
    assert isinstance(store, S3ReadStore) and (store.bucket, store.prefix) == (
        "bucket",
        "runs/prod",
    )
    with pytest.raises(ValueError):
        open_store("s3://bucket/../x")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_checkpoint_in_s3_downloads_through_the_api(client, sessions):
    eid = submit(client)["id"]
    payload = _safetensors_bytes()
    key = f"{eid}/checkpoints/last-0001.safetensors"
    fake = FakeS3({("bucket", f"prefix/{key}"): payload})
    client.app.state.store = S3ReadStore("bucket", "prefix", client=fake)
    with sessions.begin() as s:
        s.add(
            Checkpoint(
                id="a" * 32,
                experiment_id=eid,
                kind="last",
                epoch=1,
                uri=key,
                size=len(payload),
                sha256=hashlib.sha256(payload).hexdigest(),
            )
        )
    r = client.get(f"/v1/experiments/{eid}/checkpoints/{'a' * 32}/file")
    assert r.status_code == 200 and r.content == payload
    fake.objects.clear()
    gone = client.get(f"/v1/experiments/{eid}/checkpoints/{'a' * 32}/file")
    assert gone.status_code == 404


class BrokenS3(FakeS3):
    """S3 answering some calls with an error other than "no such key"."""

    def __init__(self, objects, failing: set[str], error: Exception):
        super().__init__(objects)
        self.failing, self.error = failing, error

    def get_object(self, Bucket, Key):  # noqa: N803
        if "get_object" in self.failing:
            raise self.error
        return super().get_object(Bucket, Key)

    def head_object(self, Bucket, Key):  # noqa: N803
        if "head_object" in self.failing:
            raise self.error
        return super().head_object(Bucket, Key)


def _client_error(code: str) -> Exception:
    err = Exception(f"An error occurred ({code})")
    err.response = {"Error": {"Code": code}}  # type: ignore[attr-defined]
    return err


class EndpointConnectionError(Exception):
    """Like botocore's: no ``response`` at all."""


STORE_ERRORS = [_client_error("SlowDown"), _client_error("500"), _client_error("AccessDenied"),
                EndpointConnectionError("Could not connect to the endpoint URL")]  # fmt: skip


@pytest.mark.parametrize("error", STORE_ERRORS, ids=lambda e: str(e)[:30])
def test_store_errors_other_than_not_found_raise_artifact_store_error(error):
    key = "e/checkpoints/last-0001.safetensors"
    store = S3ReadStore("bucket", "", client=BrokenS3({}, {"head_object", "get_object"}, error))
    for call in (store.exists, store.size, store.open):
        with pytest.raises(ArtifactStoreError) as info:
            call(key)
        assert info.value.__cause__ is error
    missing = S3ReadStore("bucket", "", client=FakeS3({}))
    assert missing.exists(key) is False
    with pytest.raises(FileNotFoundError):
        missing.size(key)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("failing", [{"head_object"}, {"get_object"}], ids=["head", "get"])
@pytest.mark.parametrize("error", STORE_ERRORS, ids=lambda e: str(e)[:30])
def test_a_failing_s3_store_answers_503_with_retry_after(client, sessions, failing, error):
    eid = submit(client)["id"]
    payload = _safetensors_bytes()
    key = f"{eid}/checkpoints/last-0001.safetensors"
    broken = BrokenS3({("bucket", key): payload}, failing, error)
    client.app.state.store = S3ReadStore("bucket", "", client=broken)
    with sessions.begin() as s:
        s.add(
            Checkpoint(
                id="b" * 32, experiment_id=eid, kind="last", epoch=1, uri=key,
                size=len(payload), sha256=hashlib.sha256(payload).hexdigest(),
            )
        )  # fmt: skip
    r = client.get(f"/v1/experiments/{eid}/checkpoints/{'b' * 32}/file")
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"].isdigit()
    assert r.json()["title"] == "store unavailable"
    broken.failing = set()
    assert client.get(f"/v1/experiments/{eid}/checkpoints/{'b' * 32}/file").content == payload
