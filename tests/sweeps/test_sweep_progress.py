"""A sweep moves on when a run ends (``reconciler.advance_sweep``, called by the worker after
each run), not only at the reconciler's pass; a cancelled sweep's untouched trials read
``skipped`` in its list as in its counts."""

from __future__ import annotations

from sqlalchemy import select

from service.db import jobs
from service.db.models import Experiment
from service.queue import make_celery
from tests.sweeps.test_api import grid
from worker.reconciler import advance_sweep


def _queued(sessions, sweep_id):
    with sessions() as s:
        rows = s.execute(
            select(Experiment.id, Experiment.status, Experiment.enqueued_at)
            .where(Experiment.sweep_id == sweep_id)
            .order_by(Experiment.created_at)
        )
        return [tuple(r) for r in rows]


def test_the_next_trial_is_launched_and_sent_when_a_run_ends(client, sessions, settings):
    sweep = client.post("/v1/sweeps", json=grid(max_concurrent=2)).json()
    first = _queued(sessions, sweep["id"])
    assert len(first) == 2
    eid = first[0][0]
    with sessions.begin() as s:
        jobs.claim(s, eid, "w1", 30)
    celery = make_celery(settings)
    assert advance_sweep(sessions, celery, eid) == []  # both slots still busy
    with sessions.begin() as s:
        assert jobs.finish(s, eid, "w1", "succeeded", {"metrics": {}})
    queue_dir = settings.broker_dir / "queue"
    before = len(list(queue_dir.iterdir()))
    sent = advance_sweep(sessions, celery, eid)
    assert len(sent) == 1
    rows = {r[0]: r for r in _queued(sessions, sweep["id"])}
    assert rows[sent[0]][1] == "queued" and rows[sent[0]][2] is not None  # stamped as sent
    assert len(list(queue_dir.iterdir())) == before + 1
    assert advance_sweep(sessions, celery, eid) == []  # max_concurrent holds


def test_a_run_outside_any_sweep_launches_nothing(client, sessions, settings):
    eid = client.post("/v1/experiments", json=grid()["base"]).json()["id"]
    assert advance_sweep(sessions, make_celery(settings), eid) == []


def test_a_cancelled_sweeps_untouched_trials_read_skipped(client):
    sweep = client.post("/v1/sweeps", json=grid(max_concurrent=2)).json()
    view = client.post(f"/v1/sweeps/{sweep['id']}/cancel").json()
    statuses = [e["status"] for e in client.get(f"/v1/sweeps/{sweep['id']}").json()["experiments"]]
    assert statuses == ["cancelled"] * 2 + ["skipped"] * 6
    assert "pending" not in statuses and view["counts"]["pending"] == 0
    assert view["counts"]["skipped"] == statuses.count("skipped")
