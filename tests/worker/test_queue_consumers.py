"""A queue nobody consumes: its runs say why they wait, and the reconciler stops re-sending
their message (``service.db.workers``, ``jobs.note_waiting``, ``worker.celery_app``)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from service.db import workers
from service.db.migrate import upgrade_to_head
from service.db.models import Experiment, WorkerHeartbeat, utcnow
from service.db.session import make_engine, make_sessionmaker
from service.queue import make_celery
from service.settings import Settings
from tests.worker.helpers import add_experiment
from worker.celery_app import QueueHeartbeat
from worker.reconciler import reconcile_once


@pytest.fixture
def env(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    upgrade_to_head(url)
    engine = make_engine(url)
    settings = Settings(database_url=url, broker_dir=tmp_path / "broker")
    yield make_sessionmaker(engine), make_celery(settings), tmp_path / "broker" / "queue"
    engine.dispose()


def _gpu_run(sessions, **fields) -> str:
    eid = add_experiment(sessions, **fields)
    with sessions.begin() as s:
        s.get(Experiment, eid).queue = "gpu"
    return eid


def _messages(queue_dir) -> int:
    return len(list(queue_dir.iterdir())) if queue_dir.exists() else 0


def _beat(sessions, worker: str, queues: list[str], age_s: float = 0.0) -> None:
    with sessions.begin() as s:
        workers.beat(s, worker, queues)
        s.get(WorkerHeartbeat, worker).seen_at = utcnow() - timedelta(seconds=age_s)


def test_a_run_on_a_queue_nobody_consumes_says_why_and_its_message_is_not_sent_again(env):
    sessions, celery, queue_dir = env
    _beat(sessions, "cpu-worker", ["cpu"])
    _beat(sessions, "dead-gpu-worker", ["gpu"], age_s=workers.ALIVE_S + 5)  # stopped beating
    eid = _gpu_run(sessions, enqueued_at=utcnow() - timedelta(hours=1))
    for _ in range(3):  # every pass finds it stale, none re-sends it
        report = reconcile_once(sessions, celery, stale_after_s=0)
        assert report.enqueued == [] and report.idle_queues == ["gpu"]
    assert _messages(queue_dir) == 0
    with sessions() as s:
        error = s.get(Experiment, eid).error
    assert error.startswith("waiting for a worker on queue gpu (0 consumers")
    assert "cpu: 1" in error

    _beat(sessions, "gpu-worker", ["cpu", "gpu"])  # a consumer arrives
    report = reconcile_once(sessions, celery, stale_after_s=0)
    assert report.enqueued == [eid] and report.idle_queues == []
    assert _messages(queue_dir) == 1
    with sessions() as s:
        assert s.get(Experiment, eid).error is None


def test_a_run_never_sent_is_sent_once_even_with_no_consumer_and_an_earlier_error_stays(env):
    sessions, celery, queue_dir = env
    fresh = _gpu_run(sessions)
    retried = _gpu_run(sessions, error="worker error: boom")
    report = reconcile_once(sessions, celery)
    assert set(report.enqueued) == {fresh, retried}  # waiting in the queue for a first worker
    assert reconcile_once(sessions, celery, stale_after_s=0).enqueued == []
    assert _messages(queue_dir) == 2
    with sessions() as s:
        assert s.get(Experiment, fresh).error.startswith(workers.WAITING)
        assert s.get(Experiment, retried).error == "worker error: boom"


def test_the_worker_heartbeat_names_its_queues_and_is_withdrawn_at_shutdown(env):
    sessions, _, _ = env
    beat = QueueHeartbeat(sessions, "node@host:1", ["cpu", "gpu"])
    beat.start()
    try:
        for _ in range(50):
            with sessions() as s:
                live = workers.consumers(s)
            if live:
                break
            beat._stop_event.wait(0.05)
        assert live == {"cpu": 1, "gpu": 1}
    finally:
        beat.stop()
    with sessions() as s:
        assert workers.consumers(s) == {}
        assert s.get(WorkerHeartbeat, "node@host:1") is None
