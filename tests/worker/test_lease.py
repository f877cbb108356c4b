"""The lease is renewed for as long as a task holds its run, not only between training steps,
and the liveness file the container healthcheck reads is kept fresh."""

from __future__ import annotations

import threading
import time

import pytest

from service.db import jobs
from service.db.migrate import upgrade_to_head
from service.db.models import Experiment, utcnow
from tests.worker.helpers import add_experiment, make_ctx, tiny_spec
from worker import lease
from worker.reporter import DbReporter
from worker.tasks import run_job


@pytest.fixture
def ctx(tmp_path, cache_dir):
    url = f"sqlite:///{tmp_path / 'worker.db'}"
    upgrade_to_head(url)
    # a 2 s lease renewed every second: any non-step work longer than 2 s would lose it
    ctx = make_ctx(url, tmp_path, cache_dir, "w1", lease_seconds=2, heartbeat_seconds=1)
    yield ctx
    ctx.engine.dispose()


def _lease(ctx, eid):
    with ctx.sessions() as s:
        return s.get(Experiment, eid).lease_expires_at


def test_a_checkpoint_upload_longer_than_the_lease_keeps_the_lease(ctx, monkeypatch):
    eid = add_experiment(ctx.sessions, tiny_spec(epochs=2))
    original = DbReporter.on_checkpoint
    seen: dict = {}

    def slow_upload(self, info):
        if not seen:  # the first upload takes 1.75 leases; nothing calls should_cancel meanwhile
            seen["before"] = _lease(ctx, eid)
            time.sleep(3.5)
            seen["after"] = _lease(ctx, eid)
            seen["now"] = utcnow()
            with ctx.sessions.begin() as s:
                seen["stolen"] = jobs.claim(s, eid, "w2", 2) is not None
        original(self, info)

    monkeypatch.setattr(DbReporter, "on_checkpoint", slow_upload)
    assert run_job(eid, ctx) == "succeeded"
    assert seen["stolen"] is False, "another worker could claim a live run"
    assert seen["after"] > seen["before"] and seen["after"] > seen["now"]
    with ctx.sessions() as s:
        row = s.get(Experiment, eid)
        assert (row.attempts, row.status) == (1, "succeeded")  # one claim: nobody took over


def test_a_run_whose_lease_is_taken_during_non_step_work_stops_without_writing(ctx, monkeypatch):
    eid = add_experiment(ctx.sessions, tiny_spec(epochs=20))
    original = DbReporter.on_checkpoint
    seen: dict = {}

    def taken_during_upload(self, info):
        if not seen:  # paused here; meanwhile another worker owns the row
            with ctx.sessions.begin() as s:
                s.get(Experiment, eid).lease_owner = "w2"
            deadline = time.monotonic() + 5
            while not self.lease_lost and time.monotonic() < deadline:
                time.sleep(0.05)
            seen["lost_by_keeper"] = self.lease_lost
        original(self, info)

    monkeypatch.setattr(DbReporter, "on_checkpoint", taken_during_upload)
    assert run_job(eid, ctx) == "lease lost"
    assert seen["lost_by_keeper"] is True
    with ctx.sessions() as s:
        row = s.get(Experiment, eid)
        assert (row.status, row.lease_owner) == ("running", "w2")
        assert row.last_epoch < 20


def test_the_keeper_renews_touches_the_liveness_file_and_reports_a_lost_lease(ctx, tmp_path):
    eid = add_experiment(ctx.sessions)
    with ctx.sessions.begin() as s:
        jobs.claim(s, eid, "w1", 2)
    alive = tmp_path / "alive"
    lost = threading.Event()
    keeper = lease.LeaseKeeper(
        ctx.sessions, eid, "w1", lease_s=2, every_s=0.1, on_lost=lost.set, alive_file=alive
    )
    before = _lease(ctx, eid)
    keeper.start()
    try:
        assert lease.holding_a_run()
        time.sleep(0.5)
        assert _lease(ctx, eid) > before
        first = alive.stat().st_mtime_ns
        time.sleep(0.3)
        assert alive.stat().st_mtime_ns > first
        assert not lost.is_set()
        with ctx.sessions.begin() as s:
            s.get(Experiment, eid).lease_owner = "w2"
        assert lost.wait(2.0), "a renewal that finds another owner must say so"
    finally:
        keeper.stop()
    assert not lease.holding_a_run()


def test_the_idle_timer_touches_the_liveness_file_only_while_no_run_is_held(ctx, tmp_path):
    alive = tmp_path / "idle" / "alive"
    stop = lease.start_idle_heartbeat(alive, every_s=0.05)
    try:
        time.sleep(0.3)
        assert alive.exists()
        assert time.time() - alive.stat().st_mtime < 1
        keeper = lease.LeaseKeeper(
            ctx.sessions, "none", "w1", lease_s=2, every_s=60, on_lost=lambda: None
        )
        keeper.start()  # a run is held: its keeper, not the idle timer, vouches for the worker
        try:
            time.sleep(0.1)
            held = alive.stat().st_mtime_ns
            time.sleep(0.3)
            assert alive.stat().st_mtime_ns == held
        finally:
            keeper.stop()
        time.sleep(0.3)
        assert alive.stat().st_mtime_ns > held
    finally:
        stop.set()
