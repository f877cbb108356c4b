"""The semi-supervised, contrastive and soft-sharing names through the service: listed with JSON
defaults by ``GET /v1/regularizers``, accepted in a spec beside l2 and dropout, and a 4xx naming
the field when a spec misuses them."""

from __future__ import annotations

from tests.service.test_api import spec

DATA = {"name": "mnist1d", "n_train": 100, "n_val": 50, "n_test": 50, "n_unlabeled": 200}
COMPANIONS = [{"name": "l2", "strength": 1e-3}, {"name": "dropout", "p": 0.2}]


def test_the_catalog_lists_them_with_json_defaults(client):
    items = {i["name"]: i for i in client.get("/v1/regularizers").json()["items"]}
    assert items["consistency"]["defaults"]["views"]["transforms"] == ["shift", "scale", "noise"]
    assert items["pseudo_label"]["defaults"]["threshold"] == 0.95
    assert "strength" in items["soft_sharing"]["parameters"]["properties"]


def test_each_is_accepted_beside_l2_and_dropout(client):
    for reg in (
        {"name": "pseudo_label"},
        {"name": "consistency", "mode": "mean_teacher"},
        {"name": "soft_sharing", "strength": 0.1},
    ):
        body = spec(data=DATA, regularizers=[*COMPANIONS, reg])
        r = client.post("/v1/experiments", json=body)
        assert r.status_code == 202, (reg, r.json())
    contrastive = spec(data=DATA, self_supervised={"mode": "contrastive", "epochs": 2})
    assert client.post("/v1/experiments", json=contrastive).status_code == 202


def test_misuse_is_a_422_that_names_the_field(client):
    cases = [
        (spec(regularizers=[{"name": "pseudo_label"}]), "regularizers[0]", "data.n_unlabeled"),
        (spec(data={**DATA, "name": "upload", "id": "a" * 32}), "data.n_unlabeled", "built-in"),
        (spec(data=DATA, regularizers=[{"name": "consistency", "views": {"transforms": ["flip"]}}]),
         "regularizers[0].views.transforms", "flip"),
        (spec(data=DATA, self_supervised={"mode": "contrastive", "temperature": 0}),
         "self_supervised.temperature", "greater than 0"),
    ]  # fmt: skip
    for body, field, words in cases:
        r = client.post("/v1/experiments", json=body)
        assert r.status_code == 422, (field, r.json())
        errors = r.json()["errors"]
        assert any(e["loc"] == field and words in e["msg"] for e in errors), (field, errors)
