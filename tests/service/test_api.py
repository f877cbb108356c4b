"""The REST API (CONTRACT §4) over SQLite and PostgreSQL, without a worker."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from regcore.spec import regularizer_names
from service.api.schemas import MetricSeries
from service.db.models import Checkpoint, Experiment, Metric

pytestmark = pytest.mark.timeout(60)


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


def queued_messages(settings) -> list[str]:
    folder = settings.broker_dir / "queue"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def submit(client, body: dict[str, Any] | None = None, **headers: str) -> dict[str, Any]:
    r = client.post("/v1/experiments", json=body or spec(), headers=headers)
    assert r.status_code == 202, r.text
    return r.json()


# --- submit -----------------------------------------------------------------------------------


def test_submit_answers_202_with_location_and_a_queued_experiment(client, settings):
    r = client.post("/v1/experiments", json=spec())
    assert r.status_code == 202
    body = r.json()
    assert body["status"] == "queued"
    assert r.headers["location"] == f"/v1/experiments/{body['id']}"
    assert body["spec"]["regularizers"][1]["p"] == 0.5
    assert body["spec"]["train"]["epochs"] == 3
    assert body["progress"] == {"epoch": 0, "epochs": 3}
    for key in ("name", "created_at", "started_at", "finished_at", "summary", "error"):
        assert key in body


def test_submit_enqueues_one_message_on_the_cpu_queue(client, settings, sessions):
    before = queued_messages(settings)
    body = submit(client)
    after = queued_messages(settings)
    assert len(after) == len(before) + 1
    assert after[-1].endswith(".cpu.msg")
    with sessions() as s:
        row = s.get(Experiment, body["id"])
        assert row.queue == "cpu" and row.enqueued_at is not None


def test_submit_routes_cuda_experiments_to_the_gpu_queue(client, settings, sessions):
    body = submit(client, spec(train={"epochs": 2, "device": "cuda"}))
    assert any(name.endswith(".gpu.msg") for name in queued_messages(settings))
    with sessions() as s:
        assert s.get(Experiment, body["id"]).queue == "gpu"


def test_submit_keeps_the_row_queued_when_the_broker_is_down(client, sessions):
    client.app.state.celery.conf.broker_url = "redis://127.0.0.1:1/0"
    client.app.state.celery.conf.broker_transport_options = {"socket_connect_timeout": 0.5}
    body = submit(client)
    assert body["status"] == "queued"
    with sessions() as s:
        row = s.get(Experiment, body["id"])
        assert row.status == "queued" and row.enqueued_at is None


def test_a_bad_regularizer_parameter_is_422_with_its_field_path(client):
    bad = spec(regularizers=[{"name": "l2", "strength": 0.001}, {"name": "dropout", "p": 1.5}])
    r = client.post("/v1/experiments", json=bad)
    assert r.status_code == 422
    body = r.json()
    assert body["title"] == "invalid spec"
    assert [e["loc"] for e in body["errors"]] == ["regularizers[1].p"]
    assert body["errors"][0]["msg"]


def test_an_unknown_regularizer_name_lists_the_known_ones(client):
    r = client.post("/v1/experiments", json=spec(regularizers=[{"name": "dropout_typo"}]))
    assert r.status_code == 422
    body = r.json()
    assert r.headers["content-type"] == "application/problem+json"
    assert body["type"] == "urn:reglab:problem:invalid-spec" and body["status"] == 422
    error = body["errors"][0]
    assert error["loc"] == "regularizers[0].name"
    assert "dropout" in error["msg"]
    # the one-line detail keeps the field path too
    assert body["detail"].startswith("regularizers[0].name: ")


def test_a_body_that_is_not_json_is_422(client):
    r = client.post(
        "/v1/experiments", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    assert r.json()["title"] == "invalid JSON"
    assert r.json()["errors"][0]["loc"] == "body"


def test_a_json_array_body_is_422(client):
    r = client.post("/v1/experiments", json=[spec()])
    assert r.status_code == 422
    assert r.json()["title"] == "invalid spec"


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_422(client, token):
    raw = json.dumps(spec(train={"epochs": 3, "lr": 0.1})).replace("0.1", token)
    r = client.post("/v1/experiments", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == "body"


def test_a_huge_integer_is_422_not_a_server_error(client):
    raw = json.dumps(spec(seed=1)).replace('"seed": 1', '"seed": ' + "9" * 40)
    r = client.post("/v1/experiments", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == "seed"


def test_a_wrong_content_type_is_415(client):
    r = client.post(
        "/v1/experiments", content=json.dumps(spec()), headers={"content-type": "text/plain"}
    )
    assert r.status_code == 415
    assert r.json()["title"] == "unsupported media type"


def test_a_body_over_max_spec_bytes_is_413(client, settings):
    big = spec(name="x" * 150, regularizers=[{"name": "l2", "strength": 0.001}] * 32)
    big["padding"] = "y" * settings.max_spec_bytes
    r = client.post("/v1/experiments", json=big)
    assert r.status_code == 413
    assert r.json()["title"] == "payload too large"


def test_a_repeated_idempotency_key_returns_the_same_experiment(client, settings):
    first = submit(client, spec(), **{"Idempotency-Key": "abc-123"})
    second_resp = client.post(
        "/v1/experiments", json=spec(), headers={"Idempotency-Key": "abc-123"}
    )
    assert second_resp.status_code == 202
    assert second_resp.json()["id"] == first["id"]
    assert second_resp.headers["location"] == f"/v1/experiments/{first['id']}"
    assert len(queued_messages(settings)) == 1
    other = submit(client, spec(), **{"Idempotency-Key": "abc-456"})
    assert other["id"] != first["id"]


def test_an_idempotency_key_reused_for_another_spec_is_409(client):
    submit(client, spec(), **{"Idempotency-Key": "k"})
    r = client.post("/v1/experiments", json=spec(seed=7), headers={"Idempotency-Key": "k"})
    assert r.status_code == 409
    assert "different spec" in r.json()["detail"]


# --- read, list, cancel -----------------------------------------------------------------------


def test_get_returns_the_experiment(client):
    created = submit(client)
    r = client.get(f"/v1/experiments/{created['id']}")
    assert r.status_code == 200
    assert r.json()["id"] == created["id"] and r.json()["status"] == "queued"


def test_unknown_ids_are_404_with_a_json_body(client):
    for path in (
        "/v1/experiments/nope",
        "/v1/experiments/nope/metrics",
        "/v1/experiments/nope/checkpoints",
        "/v1/experiments/nope/checkpoints/c/file",
    ):
        r = client.get(path)
        assert r.status_code == 404, path
        assert r.json() == {
            "type": "urn:reglab:problem:not-found",
            "title": "not found",
            "status": 404,
            "detail": "experiment nope does not exist",
            "instance": path,
        }
    r = client.post("/v1/experiments/nope/cancel")
    assert r.status_code == 404


def test_unknown_routes_and_methods_answer_json(client):
    r = client.get("/v1/nothing-here")
    assert r.status_code == 404 and r.json()["title"] == "not found"
    r = client.delete("/v1/experiments")
    assert r.status_code == 405 and r.json()["title"] == "method not allowed"


def test_list_is_newest_first_filters_and_pages_with_a_cursor(client):
    ids = [submit(client, spec(name="pager"))["id"] for _ in range(5)]
    other = submit(client, spec(name="other"))["id"]
    client.post(f"/v1/experiments/{ids[0]}/cancel")

    seen, cursor = [], None
    while True:
        params = {"name": "pager", "limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/experiments", params=params).json()
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))

    cancelled = client.get("/v1/experiments", params={"status": "cancelled"}).json()["items"]
    assert [item["id"] for item in cancelled] == [ids[0]]
    everything = client.get("/v1/experiments").json()
    assert everything["items"][0]["id"] == other and everything["next_cursor"] is None


def test_list_rejects_a_bad_status_and_a_bad_cursor(client):
    r = client.get("/v1/experiments", params={"status": "done"})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "query.status"
    r = client.get("/v1/experiments", params={"cursor": "garbage!"})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "cursor"


def test_cancel_of_a_queued_experiment_ends_it_cancelled(client):
    created = submit(client)
    r = client.post(f"/v1/experiments/{created['id']}/cancel")
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled" and r.json()["finished_at"] is not None
    assert client.get(f"/v1/experiments/{created['id']}").json()["status"] == "cancelled"
    # Cancelling again is harmless.
    assert client.post(f"/v1/experiments/{created['id']}/cancel").json()["status"] == "cancelled"


def test_cancel_of_a_running_experiment_sets_the_flag_the_worker_polls(client, sessions):
    created = submit(client)
    with sessions.begin() as s:
        s.get(Experiment, created["id"]).status = "running"
    body = client.post(f"/v1/experiments/{created['id']}/cancel").json()
    assert body["status"] == "running" and body["cancel_requested"] is True


def test_cancel_of_a_finished_experiment_is_409(client, sessions):
    created = submit(client)
    with sessions.begin() as s:
        s.get(Experiment, created["id"]).status = "succeeded"
    r = client.post(f"/v1/experiments/{created['id']}/cancel")
    assert r.status_code == 409
    assert "succeeded" in r.json()["detail"]


# --- metrics and checkpoints ------------------------------------------------------------------


def add_metrics(sessions, experiment_id: str, key: str, values: list[float]) -> None:
    with sessions.begin() as s:
        s.add_all(
            Metric(experiment_id=experiment_id, key=key, step=i + 1, value=v)
            for i, v in enumerate(values)
        )


def test_metrics_returns_series_by_key_and_step(client, sessions):
    eid = submit(client)["id"]
    add_metrics(sessions, eid, "train_loss", [1.0, 0.5, 0.25])
    add_metrics(sessions, eid, "val_loss", [1.1, 0.7, 0.6])
    series = client.get(f"/v1/experiments/{eid}/metrics").json()["series"]
    assert set(series) == {"train_loss", "val_loss"}
    assert series["train_loss"] == [
        {"step": 1, "value": 1.0},
        {"step": 2, "value": 0.5},
        {"step": 3, "value": 0.25},
    ]
    only = client.get(f"/v1/experiments/{eid}/metrics", params={"keys": "val_loss"}).json()
    assert set(only["series"]) == {"val_loss"}
    # live polling: only the steps after since_step
    newer = client.get(
        f"/v1/experiments/{eid}/metrics", params={"keys": "train_loss", "since_step": 2}
    ).json()
    assert newer["series"] == {"train_loss": [{"step": 3, "value": 0.25}]}
    past_the_end = client.get(f"/v1/experiments/{eid}/metrics", params={"since_step": 3}).json()
    assert past_the_end["series"] == {}


def test_an_unknown_metric_key_is_404_naming_the_keys_the_run_has(client, sessions):
    eid = submit(client)["id"]
    r = client.get(f"/v1/experiments/{eid}/metrics", params={"keys": "val_loss"})
    assert r.status_code == 404 and "it has: none yet" in r.json()["detail"]
    add_metrics(sessions, eid, "train_loss", [1.0])
    add_metrics(sessions, eid, "val_loss", [1.1])
    r = client.get(f"/v1/experiments/{eid}/metrics", params={"keys": "val_loss,ece"})
    assert r.status_code == 404
    assert r.json()["title"] == "unknown metric"
    assert r.json()["detail"] == (
        f"experiment {eid} has no metric ece; it has: train_loss, val_loss"
    )


@pytest.mark.parametrize(
    "keys",
    [",".join(f"k{i}" for i in range(3000)), ",".join(f"k{i}" for i in range(51)),
     "val_loss,Val_Loss", "val_loss,x' OR 1=1", "a" * 101, "val\x00loss"],
)  # fmt: skip
def test_metrics_keys_are_at_most_50_metric_names_or_422_naming_keys(client, sessions, keys):
    eid = submit(client)["id"]
    r = client.get(f"/v1/experiments/{eid}/metrics", params={"keys": keys})
    assert r.status_code == 422, r.text[:200]
    assert [d["loc"] for d in r.json()["errors"]] == ["keys"]
    assert len(r.content) < 500  # the keys are not echoed back
    fifty = ",".join(f"k{i}" for i in range(50))
    for i in range(50):
        add_metrics(sessions, eid, f"k{i}", [0.5])
    ok = client.get(f"/v1/experiments/{eid}/metrics", params={"keys": fifty})
    assert ok.status_code == 200 and len(ok.json()["series"]) == 50


def test_max_points_downsamples_keeping_the_first_and_last_points(client, sessions):
    eid = submit(client)["id"]
    add_metrics(sessions, eid, "val_acc", [i / 100 for i in range(100)])
    r = client.get(f"/v1/experiments/{eid}/metrics", params={"keys": "val_acc", "max_points": 10})
    points = r.json()["series"]["val_acc"]
    assert len(points) == 10
    assert points[0]["step"] == 1 and points[-1]["step"] == 100
    steps = [p["step"] for p in points]
    assert steps == sorted(steps)
    # LTTB keeps one point from each of 8 equal buckets between the first and the last
    assert max(b - a for a, b in zip(steps, steps[1:], strict=False)) <= 2 * 98 / 8 + 1
    # without it, every point; the parameter and its method are in the OpenAPI schema
    whole = client.get(f"/v1/experiments/{eid}/metrics", params={"keys": "val_acc"})
    assert len(whole.json()["series"]["val_acc"]) == 100
    assert whole.headers["content-type"] == "application/json"
    assert MetricSeries.model_validate(whole.json()).series["val_acc"][0].step == 1
    route = client.get("/openapi.json").json()["paths"]["/v1/experiments/{experiment_id}/metrics"]
    param = next(p for p in route["get"]["parameters"] if p["name"] == "max_points")
    assert "Largest-Triangle-Three-Buckets" in param["description"]


def test_non_finite_metric_values_come_back_as_null(client, sessions):
    eid = submit(client)["id"]
    add_metrics(sessions, eid, "train_loss", [1.0, float("inf")])
    points = client.get(f"/v1/experiments/{eid}/metrics").json()["series"]["train_loss"]
    assert points[1] == {"step": 2, "value": None}


def test_checkpoints_are_listed_and_their_file_downloads(client, sessions, settings):
    eid = submit(client)["id"]
    # A real (hand-built) safetensors file: the API serves nothing else.
    data = bytes(range(256)) * 4
    header = json.dumps({"w": {"dtype": "U8", "shape": [1024], "data_offsets": [0, 1024]}})
    payload = len(header).to_bytes(8, "little") + header.encode() + data
    key = f"{eid}/checkpoints/last-0003.safetensors"
    path = settings.artifacts and (__import__("pathlib").Path(settings.artifacts) / key)
    path.parent.mkdir(parents=True)
    path.write_bytes(payload)
    with sessions.begin() as s:
        s.add(
            Checkpoint(
                id="c" * 32,
                experiment_id=eid,
                kind="last",
                epoch=3,
                uri=key,
                size=len(payload),
                sha256=hashlib.sha256(payload).hexdigest(),
            )
        )
    items = client.get(f"/v1/experiments/{eid}/checkpoints").json()["items"]
    assert [(c["id"], c["kind"], c["epoch"], c["size"]) for c in items] == [
        ("c" * 32, "last", 3, len(payload))
    ]
    r = client.get(items[0]["url"])
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.content == payload
    assert hashlib.sha256(r.content).hexdigest() == items[0]["sha256"]
    missing = client.get(f"/v1/experiments/{eid}/checkpoints/{'d' * 32}/file")
    assert missing.status_code == 404 and "checkpoint" in missing.json()["detail"]


def test_a_checkpoint_whose_file_is_gone_is_404(client, sessions):
    eid = submit(client)["id"]
    with sessions.begin() as s:
        s.add(
            Checkpoint(
                id="e" * 32,
                experiment_id=eid,
                kind="best",
                epoch=1,
                uri=f"{eid}/x",
                size=1,
                sha256="0" * 64,
            )
        )
    r = client.get(f"/v1/experiments/{eid}/checkpoints/{'e' * 32}/file")
    assert r.status_code == 404 and "missing" in r.json()["detail"]


# --- catalog and health -----------------------------------------------------------------------


def test_regularizers_lists_every_name_with_a_parameter_schema(client):
    items = client.get("/v1/regularizers").json()["items"]
    assert [i["name"] for i in items] == regularizer_names()
    dropout = next(i for i in items if i["name"] == "dropout")
    assert dropout["description"]
    assert dropout["parameters"]["type"] == "object"
    assert "p" in dropout["parameters"]["properties"]


def test_datasets_lists_the_builtin_datasets(client):
    body = client.get("/v1/datasets").json()
    by_name = {d["name"]: d for d in body["items"]}
    assert {"mnist1d", "digits", "toy1d"} <= set(by_name)
    assert by_name["toy1d"]["task"] == "regression"
    assert by_name["digits"]["size"] == 1797
    assert "n_train" in body["parameters"]["properties"]


def test_healthz_and_readyz_answer_when_everything_is_up(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_readyz_is_503_when_the_broker_is_unreachable(client):
    client.app.state.celery.conf.broker_url = "redis://127.0.0.1:1/0"
    r = client.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["title"] == "not ready" and body["detail"] == "the broker did not answer"
    assert body["checks"] == {"database": "ok", "broker": "unreachable"}
    assert "127.0.0.1" not in r.text  # /readyz needs no key: the driver's reason is not echoed


def test_openapi_documents_the_spec_body(client):
    schema = client.get("/openapi.json").json()
    assert "ExperimentSpec" in schema["components"]["schemas"]
    body = schema["paths"]["/v1/experiments"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("/ExperimentSpec")
