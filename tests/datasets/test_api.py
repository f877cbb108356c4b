"""``/v1/datasets`` and specs that name datasets, checkpoints and paths, without a worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from service.db.models import Checkpoint, DatasetRow, Experiment
from tests.datasets import files as F

pytestmark = pytest.mark.timeout(60)

X, Y = F.table(n=200)


def upload(client, data: bytes, filename: str, headers=None, **form: str):
    return client.post(
        "/v1/datasets", files={"file": (filename, data)}, data=form, headers=headers or {}
    )


def spec(data: dict[str, Any], **over: Any) -> dict[str, Any]:
    return {"data": data, "model": {"name": "mlp", "hidden": [8]}, "train": {"epochs": 2}, **over}


def stored(settings) -> list[Path]:
    root = Path(settings.artifacts) / "datasets"
    return sorted(root.iterdir()) if root.exists() else []


@pytest.mark.parametrize(
    ("data", "filename", "form", "kind"),
    [
        (F.npz(x=X, y=Y), "t.npz", {}, "signal"),
        (F.csv(X, Y), "t.csv", {"target": "label"}, "table"),
        (F.parquet(X, Y), "t.parquet", {"target": "label"}, "table"),
        (F.npz(x=F.images(200)[0], y=F.images(200)[1]), "i.npz", {}, "image"),
    ],
    ids=["npz", "csv", "parquet", "images"],
)
def test_each_format_is_stored_by_a_content_id(
    client, settings, sessions, data, filename, form, kind
):
    r = upload(client, data, filename, name="mine", **form)
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) >= {"id", "name", "task", "shape", "classes", "bytes", "sha256", "created_at"}
    assert (body["name"], body["task"], body["kind"], body["classes"]) == (
        "mine", "classification", kind, 2,
    )  # fmt: skip
    assert body["shape"][0] == 200
    again = upload(client, data, filename, **form)
    assert again.status_code == 201 and again.json()["id"] == body["id"]
    assert [p.name for p in stored(settings)] == [f"{body['id']}.npz"]
    import hashlib

    assert hashlib.sha256(stored(settings)[0].read_bytes()).hexdigest() == body["sha256"]
    assert client.get(f"/v1/datasets/{body['id']}").json() == body
    listed = client.get("/v1/datasets").json()["items"]
    assert [d["id"] for d in listed if d["source"] == "upload"] == [body["id"]]
    assert {"mnist1d", "digits"} <= {d["name"] for d in listed if d["source"] == "builtin"}


@pytest.mark.parametrize(
    ("data", "form", "loc", "words"),
    [
        (F.npz(x=X, y=Y[:-1]), {}, "file.y", "199 labels"),
        (F.npz(x=np.where(np.arange(200)[:, None] == 9, np.inf, X), y=Y), {}, "file.x", "row 9"),
        (F.npz(x=X, y=Y + 0.5), {}, "file.y", "not an integer"),
        (F.npz(x=X, y=np.zeros_like(Y)), {}, "file.y", "at least 2"),
        (F.npz(x=X, y=np.where(np.arange(200) < 2, 2, Y)), {}, "file.y", "class 2"),
        (F.pickled_npz(), {}, "file.x", "pickle"),
        (F.zip_bomb(8 * 2**20), {}, "file", "expand"),
        (F.csv(X, Y).replace(b"label\n", b"label\nx,1,2,3,4,0\n", 1), {"target": "label"},
         "file.column f0", "not numeric"),
        (F.csv(X, Y), {"target": "nope"}, "target", "'label'"),
    ],
    ids=["shapes", "inf", "float-labels", "one-class", "rare-class", "pickle", "bomb", "text",
         "target"],
)  # fmt: skip
def test_a_bad_file_is_refused_with_its_reason_and_nothing_is_stored(
    client, settings, sessions, data, form, loc, words
):
    settings.max_dataset_bytes = 2**20
    r = upload(client, data, "f.npz" if data[:2] == b"PK" else "f.csv", **form)
    assert r.status_code == 422, r.text
    err = r.json()["errors"][0]
    assert err["loc"] == loc and words in err["msg"], err
    assert stored(settings) == []
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(DatasetRow)) == 0


def test_a_file_over_the_limit_is_refused(client, settings):
    settings.max_dataset_bytes = 500
    r = upload(client, F.npz(x=X, y=Y), "t.npz")
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "file"
    assert stored(settings) == []


def test_specs_are_checked_against_the_uploaded_shapes(client):
    table = upload(client, F.csv(X, Y), "t.csv", target="label").json()["id"]
    imgs = upload(client, F.npz(x=F.images(200)[0], y=F.images(200)[1]), "i.npz").json()["id"]
    r = client.post("/v1/experiments", json=spec({"name": "upload", "id": table},
                                                 model={"name": "cnn2d"}))  # fmt: skip
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == "model" and "'mlp'" in r.json()["errors"][0]["msg"]
    aug = [{"name": "augment", "transforms": ["rotate"]}]
    r = client.post("/v1/experiments", json=spec({"name": "upload", "id": table}, regularizers=aug))
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == "regularizers[0].transforms"
    ok = spec({"name": "upload", "id": imgs, "n_val": 20, "n_test": 40},
              model={"name": "cnn2d", "channels": [4]}, regularizers=aug)  # fmt: skip
    assert client.post("/v1/experiments", json=ok).status_code == 202
    too_many = spec({"name": "upload", "id": imgs, "n_train": 150, "n_test": 100})
    r = client.post("/v1/experiments", json=too_many)
    assert r.status_code == 422 and "200 examples" in r.json()["detail"]


def test_a_path_in_an_http_spec_is_refused(client):
    r = client.post("/v1/experiments", json=spec({"name": "file", "path": "/etc/shadow"}))
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "data.path"
    r = client.post("/v1/experiments", json=spec(
        {"name": "mnist1d", "n_train": 100},
        regularizers=[{"name": "tie", "reference": "/root/.bash_history"}],
    ))  # fmt: skip
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "regularizers[0].reference"
    pre = {"source": {"name": "file", "path": "/etc/passwd"}}
    r = client.post("/v1/experiments", json=spec({"name": "mnist1d"}, pretrain=pre))
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "pretrain.source.path"
    for answer in (r.text,):
        assert "root:" not in answer and "exist" not in answer


def test_another_owners_dataset_and_checkpoint_are_unknown(owners, sessions):
    client, who = owners
    ds = upload(client, F.npz(x=X, y=Y), "t.npz", headers=who["ada"]).json()["id"]
    assert client.get(f"/v1/datasets/{ds}", headers=who["ada"]).status_code == 200
    assert client.get(f"/v1/datasets/{ds}", headers=who["bob"]).status_code == 404
    assert client.delete(f"/v1/datasets/{ds}", headers=who["bob"]).status_code == 404
    bobs = client.get("/v1/datasets", headers=who["bob"]).json()["items"]
    assert all(d["source"] == "builtin" for d in bobs)
    r = client.post("/v1/experiments", json=spec({"name": "upload", "id": ds}), headers=who["bob"])
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "data.id"
    # the same file sent by bob is bob's own dataset, under another id
    own = upload(client, F.npz(x=X, y=Y), "t.npz", headers=who["bob"]).json()["id"]
    assert own != ds
    # a checkpoint of ada's experiment
    with sessions.begin() as s:
        exp = Experiment(name="e", owner="ada", spec={}, spec_hash="0" * 64, status="succeeded")
        s.add(exp)
        s.flush()
        ck = Checkpoint(experiment_id=exp.id, kind="best", epoch=1, uri="x/y.safetensors",
                        sha256="0" * 64)  # fmt: skip
        s.add(ck)
        s.flush()
        ck_id = ck.id
    tie = [{"name": "tie", "strength": 1e6, "reference": ck_id}]
    body = spec({"name": "mnist1d", "n_train": 100}, regularizers=tie)
    r = client.post("/v1/experiments", json=body, headers=who["bob"])
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "regularizers[0].reference"
    assert client.post("/v1/experiments", json=body, headers=who["ada"]).status_code == 202


def test_delete_is_refused_while_a_queued_experiment_uses_the_dataset(client, settings, sessions):
    ds = upload(client, F.npz(x=X, y=Y), "t.npz").json()["id"]
    eid = client.post("/v1/experiments", json=spec({"name": "upload", "id": ds})).json()["id"]
    r = client.delete(f"/v1/datasets/{ds}")
    assert r.status_code == 409 and eid in r.json()["detail"]
    assert client.post(f"/v1/experiments/{eid}/cancel").status_code == 200
    assert client.delete(f"/v1/datasets/{ds}").status_code == 204
    assert client.get(f"/v1/datasets/{ds}").status_code == 404
    assert stored(settings) == []


def test_a_sweep_checks_dataset_ids_and_paths_as_an_experiment_does(owners):
    client, who = owners
    ds = upload(client, F.npz(x=X, y=Y), "t.npz", headers=who["ada"]).json()["id"]
    sweep = {"base": spec({"name": "upload", "id": ds}), "space": {"train.lr": [0.01, 0.1]}}
    r = client.post("/v1/sweeps", json=sweep, headers=who["bob"])
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == "data.id"
    assert "configuration 0" in r.json()["errors"][0]["msg"]
    assert client.post("/v1/sweeps", json=sweep, headers=who["ada"]).status_code == 202
    paths = {**sweep, "base": spec({"name": "file", "path": "/etc/shadow"})}
    r = client.post("/v1/sweeps", json=paths, headers=who["ada"])
    assert r.status_code == 422 and "path" in r.text


class FakeS3:
    """The calls the datasets routes make on S3, on a dict."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}

    def put_object(self, Bucket, Key, Body):  # noqa: N803 - boto3's names
        self.objects[Bucket, Key] = bytes(Body)

    def delete_object(self, Bucket, Key):  # noqa: N803
        self.objects.pop((Bucket, Key), None)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_upload_goes_to_an_s3_store_and_delete_removes_it(client):
    import hashlib

    from service.artifacts import S3ReadStore

    fake = FakeS3()
    client.app.state.store = S3ReadStore("bucket", "runs", client=fake)
    body = upload(client, F.npz(x=X, y=Y), "t.npz").json()
    blob = fake.objects["bucket", f"runs/datasets/{body['id']}.npz"]
    assert hashlib.sha256(blob).hexdigest() == body["sha256"]
    assert client.delete(f"/v1/datasets/{body['id']}").status_code == 204
    assert fake.objects == {}


def test_a_pretrain_source_takes_the_owners_dataset_id(owners):
    client, who = owners
    ds = upload(client, F.npz(x=X, y=Y), "t.npz", headers=who["ada"]).json()["id"]
    body = spec({"name": "upload", "id": ds}, pretrain={"source": {"name": "upload", "id": ds}})
    r = client.post("/v1/experiments", json=body, headers=who["bob"])
    assert r.status_code == 422
    assert {e["loc"] for e in r.json()["errors"]} == {"data.id", "pretrain.source.id"}
    assert client.post("/v1/experiments", json=body, headers=who["ada"]).status_code == 202
