"""service.db.jobs: the worker's state transitions, each guarded by the lease."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from service.db import jobs
from service.db.models import Checkpoint, Experiment, Metric, utcnow
from tests.worker.helpers import add_experiment


def _row(sessions, eid) -> Experiment:
    with sessions() as s:
        return s.get(Experiment, eid)


def _expire(sessions, eid):
    with sessions.begin() as s:
        s.get(Experiment, eid).lease_expires_at = utcnow() - timedelta(seconds=1)


def test_only_one_worker_can_claim_a_queued_row_and_the_attempt_is_counted(sessions):
    eid = add_experiment(sessions)
    with sessions.begin() as s:
        assert jobs.claim(s, eid, "w1", 30) is not None
    with sessions.begin() as s:
        assert jobs.claim(s, eid, "w2", 30) is None
    row = _row(sessions, eid)
    assert (row.status, row.lease_owner, row.attempts) == ("running", "w1", 1)
    assert row.lease_expires_at > utcnow() + timedelta(seconds=20)


def test_an_expired_lease_is_taken_over_and_the_old_owner_can_no_longer_write(sessions):
    eid = add_experiment(sessions)
    with sessions.begin() as s:
        jobs.claim(s, eid, "w1", 30)
    _expire(sessions, eid)
    with sessions.begin() as s:
        assert jobs.claim(s, eid, "w2", 30) is not None
    with sessions.begin() as s:
        assert not jobs.heartbeat(s, eid, "w1", 30)
        assert not jobs.record_epoch(s, eid, "w1", 1, {"val_loss": 1.0}, 30)
        assert not jobs.finish(s, eid, "w1", "succeeded", {})
        assert jobs.poll(s, eid, "w1").owned is False
        assert jobs.poll(s, eid, "w2").owned is True
    row = _row(sessions, eid)
    assert (row.status, row.lease_owner, row.attempts) == ("running", "w2", 2)
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Metric)) == 0


def test_a_repeated_epoch_does_not_duplicate_metric_points(sessions):
    eid = add_experiment(sessions)
    with sessions.begin() as s:
        jobs.claim(s, eid, "w1", 30)
    for _ in range(2):
        with sessions.begin() as s:
            assert jobs.record_epoch(s, eid, "w1", 1, {"val_loss": 0.5, "bad": float("nan")}, 30)
    with sessions() as s:
        points = s.execute(select(Metric.key, Metric.step, Metric.value)).all()
    assert [tuple(p) for p in points] == [("val_loss", 1, 0.5)]
    assert _row(sessions, eid).last_epoch == 1


def test_only_the_newest_checkpoint_of_each_kind_is_kept(sessions):
    eid = add_experiment(sessions)
    with sessions.begin() as s:
        jobs.claim(s, eid, "w1", 30)

    def record(kind, epoch):
        with sessions.begin() as s:
            return jobs.record_checkpoint(
                s,
                eid,
                "w1",
                kind=kind,
                epoch=epoch,
                uri=f"{kind}{epoch}.w",
                state_uri=f"{kind}{epoch}.s",
                sidecar_uri=f"{kind}{epoch}.j",
                size=1,
                sha256="x",
            )

    assert record("last", 1) == []
    assert record("best", 1) == []
    assert record("last", 2) == ["last1.w", "last1.s", "last1.j"]
    with sessions() as s:
        rows = s.execute(select(Checkpoint.kind, Checkpoint.epoch).order_by(Checkpoint.kind)).all()
        assert [tuple(r) for r in rows] == [("best", 1), ("last", 2)]
        assert jobs.latest_checkpoint(s, eid, "last").uri == "last2.w"
    with sessions.begin() as s:
        jobs.finish(s, eid, "w1", "succeeded", {"epochs_run": 2})
    assert record("last", 3) is None  # not ours any more


def test_expired_leases_are_requeued_until_attempts_run_out(sessions):
    fresh = add_experiment(sessions)
    spent = add_experiment(sessions)
    cancelled = add_experiment(sessions)
    live = add_experiment(sessions)
    for eid in (fresh, spent, cancelled, live):
        with sessions.begin() as s:
            jobs.claim(s, eid, "w1", 30)
    with sessions.begin() as s:
        s.get(Experiment, spent).attempts = 3
        s.get(Experiment, cancelled).cancel_requested = True
    for eid in (fresh, spent, cancelled):
        _expire(sessions, eid)
    with sessions.begin() as s:
        assert jobs.requeue_expired(s) == [fresh]
    assert _row(sessions, fresh).status == "queued"
    assert _row(sessions, fresh).enqueued_at is None
    failed = _row(sessions, spent)
    assert failed.status == "failed" and "gave up after 3 attempt(s)" in failed.error
    assert _row(sessions, cancelled).status == "cancelled"
    assert _row(sessions, live).status == "running"


def test_a_row_with_its_attempts_used_up_cannot_be_claimed_and_is_failed(sessions):
    eid = add_experiment(sessions, attempts=3)
    with sessions.begin() as s:
        assert jobs.claim(s, eid, "w1", 30) is None
        assert jobs.settle_unclaimable(s, eid) == "failed"
    assert _row(sessions, eid).status == "failed"


def test_stale_queued_finds_unsent_and_long_waiting_rows_but_not_fresh_ones(sessions):
    now = utcnow()
    unsent = add_experiment(sessions)
    old = add_experiment(sessions, enqueued_at=now - timedelta(hours=1))
    recent = add_experiment(sessions, enqueued_at=now)
    with sessions() as s:
        found = jobs.stale_queued(s, older_than=now - timedelta(minutes=10))
    assert set(found) == {unsent, old}
    assert recent not in found


def test_a_released_run_goes_back_to_the_queue_without_using_an_attempt(sessions):
    eid = add_experiment(sessions)
    with sessions.begin() as s:
        jobs.claim(s, eid, "w1", 30)
    with sessions.begin() as s:
        assert not jobs.release(s, eid, "w2")
        assert jobs.release(s, eid, "w1")
    row = _row(sessions, eid)
    assert (row.status, row.attempts, row.lease_owner, row.enqueued_at) == ("queued", 0, None, None)


def test_a_released_run_whose_cancel_was_asked_for_ends_cancelled(sessions):
    eid = add_experiment(sessions)
    with sessions.begin() as s:
        jobs.claim(s, eid, "w1", 30)
        s.get(Experiment, eid).cancel_requested = True
    with sessions.begin() as s:
        assert jobs.release(s, eid, "w1")
    row = _row(sessions, eid)
    assert row.status == "cancelled" and row.finished_at is not None
