"""Scenario 4: PostgreSQL stops (as in a crash: ``pg_ctl -m immediate``) while a run is training.
While it is down the API answers 503 with a JSON body (not 500); when it is back everything
recovers without restarting the API or the worker, and no metric the API had shown is lost.

The database is a private cluster (initdb + pg_ctl on a free port), never the shared one."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import Settings
from tests.faults.conftest import (
    PrivatePostgres,
    PrivateRedis,
    assert_same_as_uninterrupted,
    free_port,
    tiny_spec,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

EPOCHS = 20
OUTAGE_S = 6.0


def test_the_api_answers_503_with_a_json_body_when_the_database_is_unreachable(tmp_path: Path):
    """In process, no server at all behind the URL: the handler, not a lucky timeout."""
    nobody = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/reglab"
    settings = Settings(database_url=nobody, broker_dir=tmp_path / "broker",
                        artifacts=str(tmp_path / "store"), auth="off")  # fmt: skip
    with TestClient(
        create_app(settings), base_url="http://127.0.0.1", raise_server_exceptions=False
    ) as client:
        for response in (
            client.get("/v1/experiments"),
            client.get(f"/v1/experiments/{'0' * 32}"),
            client.post("/v1/experiments", json=tiny_spec()),
        ):
            assert response.status_code == 503, response.text
            body = response.json()
            assert body["title"] == "not ready" and body["status"] == 503
            assert body["detail"] == "the database is unreachable; retry shortly"
            assert response.headers["retry-after"].isdigit()
            assert "127.0.0.1" not in response.text  # the driver's message is not echoed
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200


def test_a_database_restart_during_training_loses_no_acknowledged_metric(
    stack_factory, private_postgres: PrivatePostgres, private_redis: PrivateRedis,
    tmp_path: Path, cache_dir: Path, figures: dict,
):  # fmt: skip
    # a lease longer than the outage: the worker waits the database out instead of giving up
    stack = stack_factory(private_postgres.url, private_redis.url, lease_s=30)
    api = stack.start_api()
    worker = stack.start_worker()
    spec = tiny_spec(epochs=EPOCHS, n_train=600, batch_size=10, name="pg-restart")
    eid = api.submit(spec)["id"]
    stack.wait_until(lambda: api.get(eid)["progress"]["epoch"] >= 3, 90, "epoch 3")
    acknowledged = api.metrics(eid, max_points=1000)
    acked_points = {
        (key, p["step"]): p["value"] for key, points in acknowledged.items() for p in points
    }
    serve_pid = stack.serve.popen.pid if stack.serve else None
    stack.engine.dispose()  # the test's own pool must not hold dead connections either

    stopped = time.monotonic()
    private_postgres.stop("immediate")
    answers: list[tuple[str, int, dict]] = []
    while time.monotonic() - stopped < OUTAGE_S:
        for method, path, body in (
            ("GET", f"/v1/experiments/{eid}", None),
            ("GET", "/v1/experiments", None),
            ("POST", "/v1/experiments", tiny_spec(name="while-down")),
            ("GET", f"/v1/experiments/{eid}/metrics", None),
        ):
            r = httpx.request(method, f"{stack.base}{path}", json=body, timeout=30)
            answers.append((f"{method} {path}", r.status_code, r.json()))
        time.sleep(0.5)
    ready_while_down = httpx.get(f"{stack.base}/readyz", timeout=30)
    healthy_while_down = httpx.get(f"{stack.base}/healthz", timeout=30)
    private_postgres.start()
    private_postgres.restarts += 1
    outage = time.monotonic() - stopped

    done = stack.wait_terminal([eid], timeout=120)[eid]
    after = api.submit(tiny_spec(epochs=2, name="after-restart"))["id"]
    after_row = stack.wait_terminal([after], timeout=60)[after]
    series = stack.metric_series(eid)
    stored = {(key, step): value for key, points in series.items() for step, value in points}
    lost = [k for k, v in acked_points.items() if stored.get(k) != v]
    retries = worker.output().count("database unreachable while")
    statuses = [status for _, status, _ in answers]
    figures.update(
        experiments=2,
        postgres_restarts=private_postgres.restarts,
        outage_s=round(outage, 1),
        requests_while_down=len(answers),
        answered_503=statuses.count(503),
        server_errors_other_than_503=sum(s >= 500 and s != 503 for s in statuses),
        acknowledged_metric_points=len(acked_points),
        lost=len(lost),
        duplicated_metric_points=stack.duplicated_metric_points(),
        worker_db_retry_episodes=retries,
        attempts=done["attempts"],
        status=done["status"],
    )

    assert answers and all(status == 503 for status in statuses), answers
    assert all(body["title"] == "not ready" and "unreachable" in body["detail"]
               for _, _, body in answers)  # fmt: skip
    assert ready_while_down.status_code == 503 and healthy_while_down.status_code == 200
    # recovered without a restart: the same API process, the same worker, one attempt
    assert stack.serve is not None and stack.serve.popen.pid == serve_pid
    assert stack.serve.popen.poll() is None and worker.popen.poll() is None
    assert retries >= 1, "the worker never saw the outage: the test proved nothing"
    assert done["status"] == "succeeded" and done["attempts"] == 1, done
    assert after_row["status"] == "succeeded"
    assert acked_points and not lost, lost
    assert figures["duplicated_metric_points"] == 0
    assert_same_as_uninterrupted(spec, series, done["summary"], EPOCHS, tmp_path / "ref", cache_dir)
    assert stack.audit().violations() == []
