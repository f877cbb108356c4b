"""Operations: Prometheus /metrics, request ids (HTTP and task headers), JSON logs, submit rate
limits."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import httpx
from celery import signals
from fastapi.testclient import TestClient

from service.api.ratelimit import TokenBuckets
from service.db import jobs
from service.db.models import Experiment, utcnow
from service.main import create_app
from service.observability import counters
from service.observability.context import TASK_HEADER, _bind_task, request_id
from service.observability.logs import JSONFormatter
from service.queue import make_celery
from tests.api.conftest import BASE_URL, spec, submit
from worker.lease import LeaseKeeper
from worker.reconciler import reconcile_once


def sample(text: str, series: str) -> float:
    """The value of ``series`` (name and labels, as Prometheus prints them) in ``text``."""
    line = next(ln for ln in text.splitlines() if ln.startswith(series + " "))
    return float(line.rsplit(" ", 1)[1])


def test_metrics_count_routes_experiments_and_queues(client, sessions):
    submit(client)
    submit(client)
    client.get("/v1/experiments")
    text = client.get("/metrics").text
    assert 'reglab_experiments{status="queued"} 2.0' in text
    assert 'reglab_queue_depth{queue="cpu"} 2.0' in text
    assert 'reglab_queue_oldest_age_seconds{queue="cpu"}' in text
    assert 'reglab_leases{state="expired"} 0.0' in text
    line = next(
        ln for ln in text.splitlines()
        if ln.startswith('reglab_http_requests_total{method="POST",route="/v1/experiments"')
    )  # fmt: skip
    assert 'status="202"' in line and float(line.rsplit(" ", 1)[1]) >= 2
    assert 'reglab_http_request_duration_seconds_bucket{le="0.001",method="GET"' in text
    client.get("/no/such/path/" + "x" * 50)
    assert "/no/such/path" not in client.get("/metrics").text  # unmatched: a bounded label


def test_a_request_id_comes_back_and_travels_in_the_task_headers(client):
    sent: list[dict] = []

    def capture(headers=None, **_):
        sent.append(dict(headers or {}))

    signals.before_task_publish.connect(capture, weak=False)
    try:
        r = client.post("/v1/experiments", json=spec(), headers={"X-Request-ID": "req-42"})
    finally:
        signals.before_task_publish.disconnect(capture)
    assert r.status_code == 202 and r.headers["x-request-id"] == "req-42"
    assert sent and sent[-1][TASK_HEADER] == "req-42"
    fresh = client.get("/v1/experiments", headers={"X-Request-ID": "bad id\twith spaces"})
    assert fresh.headers["x-request-id"] != "bad id\twith spaces"
    assert len(fresh.headers["x-request-id"]) == 32


def test_the_worker_side_binds_the_header_and_log_lines_carry_it():
    class Task:
        class request:  # noqa: N801 - celery's attribute name
            reglab_request_id = "req-7"

    _bind_task(task=Task)
    try:
        record = logging.LogRecord("worker", logging.INFO, __file__, 1, "epoch %d", (3,), None)
        line = json.loads(JSONFormatter().format(record))
    finally:
        request_id.set(None)
    assert line["message"] == "epoch 3" and line["request_id"] == "req-7"
    assert line["level"] == "info" and line["logger"] == "worker"


def test_submits_beyond_the_burst_are_429_with_retry_after(settings):
    limited = settings.model_copy(update={"submit_rate": 0.5, "submit_burst": 2})
    with TestClient(create_app(limited), base_url=BASE_URL, raise_server_exceptions=False) as c:
        assert [c.post("/v1/experiments", json=spec()).status_code for _ in range(2)] == [202, 202]
        r = c.post("/v1/experiments", json=spec())
        assert r.status_code == 429 and r.headers["content-type"] == "application/problem+json"
        assert r.headers["retry-after"] == "2" and r.json()["title"] == "too many requests"
        assert c.get("/v1/experiments").status_code == 200  # reads are not limited


def test_the_token_bucket_refills_at_its_rate_and_keys_are_separate():
    now = [0.0]
    buckets = TokenBuckets(rate=1.0, burst=2, clock=lambda: now[0])
    assert [buckets.take("a"), buckets.take("a")] == [0.0, 0.0]
    assert buckets.take("a") == 1.0 and buckets.take("b") == 0.0
    now[0] = 0.5
    assert buckets.take("a") == 0.5
    now[0] = 1.0
    assert buckets.take("a") == 0.0
    assert TokenBuckets(rate=0, burst=1).take("a") == 0.0  # 0 turns the limit off


def test_serve_and_worker_log_json_lines_unless_told_text(monkeypatch):
    from reglab.server_cli import _logging
    from service.observability.logs import _Marker

    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    try:
        _logging("info")
        ours = [h for h in root.handlers if isinstance(h, _Marker)]
        assert len(ours) == 1 and isinstance(ours[0].formatter, JSONFormatter)
        monkeypatch.setenv("REGLAB_LOG_FORMAT", "text")
        _logging("debug")
        ours = [h for h in root.handlers if isinstance(h, _Marker)]
        assert len(ours) == 1 and not isinstance(ours[0].formatter, JSONFormatter)
        assert root.level == logging.DEBUG
    finally:
        root.handlers[:] = before[0]
        root.setLevel(before[1])


def test_reconciler_actions_move_their_counters_in_the_apis_metrics(client, sessions, settings):
    eid = submit(client)["id"]
    with sessions.begin() as s:  # its worker died: running, lease expired
        row = s.get(Experiment, eid)
        row.status, row.lease_owner, row.attempts = "running", "gone", 1
        row.lease_expires_at = utcnow() - timedelta(minutes=5)
    series = {a: f'reglab_reconciler_actions_total{{action="{a}"}}' for a in ("requeued", "resent")}
    before = client.get("/metrics").text
    report = reconcile_once(sessions, make_celery(settings), grace_s=0)
    assert report.requeued == [eid] and report.enqueued == [eid]  # taken back, sent again
    after = client.get("/metrics").text
    for action in ("requeued", "resent"):
        assert sample(after, series[action]) == sample(before, series[action]) + 1, action
    # nothing consumes cpu here: the reconciler marked the run as waiting for a worker
    assert sample(after, 'reglab_runs_waiting_for_worker{queue="cpu"}') == 1
    assert sample(after, 'reglab_runs_waiting_for_worker{queue="gpu"}') == 0
    reconcile_once(sessions, make_celery(settings), grace_s=0)  # nothing left to do
    again = client.get("/metrics").text
    assert sample(again, series["requeued"]) == sample(after, series["requeued"])
    assert sample(again, series["resent"]) == sample(after, series["resent"])


def test_lease_renewals_are_counted_and_served_by_the_worker(client, sessions):
    eid = submit(client)["id"]
    with sessions.begin() as s:
        assert jobs.claim(s, eid, "w1", 60) is not None
    keeper = LeaseKeeper(sessions, eid, "w1", lease_s=60, every_s=60, on_lost=lambda: None)
    server = counters.serve_worker_metrics(0)
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    try:
        before = httpx.get(url).text
        assert keeper.beat() and keeper.beat()
        with sessions.begin() as s:  # another worker took the run over
            s.get(Experiment, eid).lease_owner = "w2"
        assert not keeper.beat()
        after = httpx.get(url).text
    finally:
        server.shutdown()
        server.server_close()
    renewed = 'reglab_lease_renewals_total{outcome="renewed"}'
    lost = 'reglab_lease_renewals_total{outcome="lost"}'
    assert sample(after, renewed) == sample(before, renewed) + 2
    assert sample(after, lost) == sample(before, lost) + 1
    assert "reglab_lease_renewals" not in client.get("/metrics").text  # the worker's, not the API's


def test_a_worker_serves_its_metrics_only_when_the_port_is_set(monkeypatch):
    from service.settings import Settings
    from worker import celery_app

    started = []
    real = counters.serve_worker_metrics

    def serve(port: int, addr: str):
        started.append(real(port, addr))
        return started[-1]

    monkeypatch.setattr(counters, "serve_worker_metrics", serve)
    monkeypatch.setattr(celery_app, "get_settings", lambda: Settings(worker_metrics_port=None))
    celery_app._serve_metrics()  # the worker_ready handler
    assert started == []
    monkeypatch.setattr(celery_app, "get_settings", lambda: Settings(worker_metrics_port=0))
    celery_app._serve_metrics()
    try:
        text = httpx.get(f"http://127.0.0.1:{started[0].server_port}/metrics").text
        assert 'reglab_lease_renewals_total{outcome="renewed"}' in text
    finally:
        started[0].shutdown()
        started[0].server_close()
