"""Scenario: PostgreSQL turns read-only while a run trains (``ALTER DATABASE ... SET
default_transaction_read_only = on``, and every connection to it cut, so that each process
reconnects to a database that refuses writes), then writable again (``RESET``) without
cutting anything: the product must drop its read-only connections by itself.

A write then fails with SQLSTATE 25006 (``ReadOnlySqlTransaction``), which used to read as a
bad statement: the job ended with ``worker error``. It is an outage now (``service.db.outage``):
the worker waits it out (``retry_db``), the API answers 503 problem+json with Retry-After."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import make_url

from service.db.migrate import upgrade_to_head
from service.db.session import make_engine
from service.main import create_app
from service.settings import Settings
from tests.faults.conftest import PrivateRedis, assert_same_as_uninterrupted, tiny_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

EPOCHS = 20
READ_ONLY_S = 6.0


def _set_read_only(admin_url: str, database: str, on: bool) -> None:
    engine = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        setting = (
            "SET default_transaction_read_only = on"
            if on
            else "RESET default_transaction_read_only"
        )
        conn.execute(text(f'ALTER DATABASE "{database}" {setting}'))
        if on:  # the setting applies to new connections: make every process open new ones
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = :db AND pid <> pg_backend_pid()"),
                {"db": database},
            )  # fmt: skip
    engine.dispose()


def test_the_api_answers_503_naming_a_read_only_database_for_writes_and_serves_reads(
    new_postgres_database, postgres_admin_url: str, tmp_path: Path
):
    """In process: the handler maps SQLSTATE 25006 to 503, not 500, and says why."""
    db_url = new_postgres_database()
    upgrade_to_head(db_url)
    database = make_url(db_url).database
    assert database
    _set_read_only(postgres_admin_url, database, on=True)
    settings = Settings(database_url=db_url, broker_dir=tmp_path / "broker",
                        artifacts=str(tmp_path / "store"), auth="off")  # fmt: skip
    with TestClient(
        create_app(settings), base_url="http://127.0.0.1", raise_server_exceptions=False
    ) as client:
        refused = client.post("/v1/experiments", json=tiny_spec())
        listed = client.get("/v1/experiments")
    _set_read_only(postgres_admin_url, database, on=False)
    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    body = refused.json()
    assert (body["title"], body["status"]) == ("not ready", 503)
    assert body["detail"] == "the database is read-only; retry shortly"
    assert refused.headers["retry-after"].isdigit()
    assert listed.status_code == 200


def test_a_database_switched_read_only_mid_run_pauses_the_run_and_loses_nothing(
    stack_factory, new_postgres_database, postgres_admin_url: str,
    private_redis: PrivateRedis, tmp_path: Path, cache_dir: Path, figures: dict,
):  # fmt: skip
    db_url = new_postgres_database()
    database = make_url(db_url).database
    assert database
    # a lease longer than the read-only spell: the worker waits it out instead of giving up
    stack = stack_factory(db_url, private_redis.url, lease_s=30)
    api = stack.start_api()
    worker = stack.start_worker()
    spec = tiny_spec(epochs=EPOCHS, batch_size=10, name="read-only")
    eid = api.submit(spec)["id"]
    stack.wait_until(lambda: api.get(eid)["progress"]["epoch"] >= 3, 90, "epoch 3")
    serve_pid, worker_pid = stack.serve.popen.pid if stack.serve else None, worker.popen.pid

    _set_read_only(postgres_admin_url, database, on=True)
    stack.engine.dispose()  # the test's own pool was cut too
    started = time.monotonic()
    writes: list[tuple[int, dict]] = []
    reads: list[int] = []
    while time.monotonic() - started < READ_ONLY_S:
        r = httpx.post(f"{stack.base}/v1/experiments", json=tiny_spec(name="while-read-only"),
                       timeout=30)  # fmt: skip
        writes.append((r.status_code, r.json()))
        reads.append(httpx.get(f"{stack.base}/v1/experiments/{eid}", timeout=30).status_code)
        time.sleep(0.5)
    epoch_while_read_only = stack.experiments()[eid]["last_epoch"]
    acknowledged = api.metrics(eid, max_points=1000)
    acked = {(k, p["step"]): p["value"] for k, points in acknowledged.items() for p in points}
    _set_read_only(postgres_admin_url, database, on=False)
    read_only_s = time.monotonic() - started

    done = stack.wait_terminal([eid], timeout=120)[eid]
    # the API's first write after may still meet a connection opened while read-only: a 503,
    # after which its pool holds none of them
    after_statuses = []
    for _ in range(5):
        r = httpx.post(f"{stack.base}/v1/experiments", json=tiny_spec(epochs=2, name="after"),
                       timeout=30)  # fmt: skip
        after_statuses.append(r.status_code)
        if r.status_code == 202:
            break
        time.sleep(0.5)
    after = r.json()["id"] if r.status_code == 202 else None
    after_row = stack.wait_terminal([after], timeout=60)[after] if after else None
    series = stack.metric_series(eid)
    stored = {(key, step): value for key, points in series.items() for step, value in points}
    lost = [k for k, v in acked.items() if stored.get(k) != v]
    statuses = [s for s, _ in writes]
    figures.update(
        experiments=2,
        read_only_s=round(read_only_s, 1),
        writes_while_read_only=len(writes),
        answered_503=statuses.count(503),
        server_errors_other_than_503=sum(s >= 500 and s != 503 for s in statuses + reads),
        reads_answered_200=f"{reads.count(200)} of {len(reads)}",
        epoch_while_read_only=epoch_while_read_only,
        worker_read_only_retry_episodes=worker.output().count("database read-only while"),
        status=done["status"],
        attempts=done["attempts"],
        acknowledged_metric_points=len(acked),
        lost=len(lost),
        duplicated_metric_points=stack.duplicated_metric_points(),
        writes_after_until_accepted=after_statuses,
        next_job=after_row["status"] if after_row else None,
    )

    assert writes and all(status == 503 for status in statuses), writes
    assert all(body["title"] == "not ready" and "read-only" in body["detail"]
               for _, body in writes)  # fmt: skip
    assert all(status == 200 for status in reads), reads  # reads go on
    # nothing restarted: the same API and worker processes, the run's first attempt
    assert stack.serve is not None and stack.serve.popen.pid == serve_pid
    assert stack.serve.popen.poll() is None and worker.popen.poll() is None
    assert worker.popen.pid == worker_pid
    assert figures["worker_read_only_retry_episodes"] >= 1, "the worker never met it"
    assert epoch_while_read_only < EPOCHS, "the run ended before the database was read-only"
    assert done["status"] == "succeeded" and done["attempts"] == 1, done
    assert after_row is not None and after_row["status"] == "succeeded", after_statuses
    assert acked and not lost, lost
    assert figures["duplicated_metric_points"] == 0
    assert_same_as_uninterrupted(spec, series, done["summary"], EPOCHS, tmp_path / "ref", cache_dir)
    assert stack.audit().violations() == []
