"""The task in-process on SQLite: claim, run regcore through DbReporter, record the outcome."""

from __future__ import annotations

from datetime import timedelta

import pytest
import torch
from safetensors.torch import load_file
from sqlalchemy import select

from service.db import jobs
from service.db.migrate import upgrade_to_head
from service.db.models import Checkpoint, Experiment, Metric, utcnow
from tests.worker.helpers import add_experiment, diverging_spec, make_ctx, tiny_spec
from worker import reporter as reporter_mod
from worker.reporter import DbReporter
from worker.tasks import run_job


@pytest.fixture
def db_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'worker.db'}"
    upgrade_to_head(url)
    return url


@pytest.fixture
def ctx(db_url, tmp_path, cache_dir):
    ctx = make_ctx(db_url, tmp_path, cache_dir, "w1")
    yield ctx
    ctx.engine.dispose()


def _row(ctx, eid) -> Experiment:
    with ctx.sessions() as s:
        return s.get(Experiment, eid)


def _series(ctx, eid) -> dict[str, list[float]]:
    with ctx.sessions() as s:
        query = select(Metric.key, Metric.value).where(Metric.experiment_id == eid)
        rows = s.execute(query.order_by(Metric.step)).all()
    out: dict[str, list[float]] = {}
    for key, value in rows:
        if not key.startswith("sys_"):  # system metrics measure the machine, run to run
            out.setdefault(key, []).append(value)
    return out


def test_a_queued_experiment_runs_to_succeeded_with_metrics_and_loadable_checkpoints(ctx):
    eid = add_experiment(ctx.sessions)
    assert run_job(eid, ctx) == "succeeded"
    row = _row(ctx, eid)
    assert row.status == "succeeded" and row.error is None and row.lease_owner is None
    assert row.summary["epochs_run"] == 3 and row.last_epoch == 3
    assert len(_series(ctx, eid)["val_loss"]) == 3
    with ctx.sessions() as s:
        ckpts = s.scalars(select(Checkpoint).where(Checkpoint.experiment_id == eid)).all()
    assert {c.kind for c in ckpts} == {"best", "last"}
    last = next(c for c in ckpts if c.kind == "last")
    assert last.epoch == 3
    weights = load_file(str(ctx.store.path(last.uri)))
    assert any(k.endswith("weight") for k in weights)
    # a second delivery of the same message does nothing
    assert run_job(eid, ctx).startswith("skipped")
    assert _row(ctx, eid).attempts == 1


def test_a_diverging_run_fails_at_once_with_the_reason(ctx):
    eid = add_experiment(ctx.sessions, diverging_spec())
    assert run_job(eid, ctx) == "failed"
    row = _row(ctx, eid)
    assert row.status == "failed" and row.attempts == 1
    assert "became inf" in row.error  # "train_loss became inf in epoch 2"


def test_a_stored_spec_that_no_longer_validates_fails_with_the_field(ctx):
    spec = tiny_spec()
    spec["regularizers"] = [{"name": "no_such_regularizer"}]
    eid = add_experiment(ctx.sessions, spec)
    assert run_job(eid, ctx) == "failed"
    assert "regularizers" in _row(ctx, eid).error


def test_a_cancel_request_stops_the_run_and_keeps_the_last_checkpoint(ctx, monkeypatch):
    eid = add_experiment(ctx.sessions, tiny_spec(epochs=20))
    original = DbReporter.on_epoch

    def on_epoch(self, epoch, metrics):
        original(self, epoch, metrics)
        if epoch == 2:
            with ctx.sessions.begin() as s:
                s.get(Experiment, eid).cancel_requested = True
            self._last_poll -= 10  # don't wait for the 1 s poll throttle

    monkeypatch.setattr(DbReporter, "on_epoch", on_epoch)
    assert run_job(eid, ctx) == "cancelled"
    row = _row(ctx, eid)
    assert row.status == "cancelled" and row.last_epoch == 2
    with ctx.sessions() as s:
        last = jobs.latest_checkpoint(s, eid, "last")
    assert last.epoch == 2 and ctx.store.exists(last.uri)


class Crash(BaseException):
    """Stands in for SIGKILL: nothing in the task catches it."""


def test_a_run_whose_worker_died_resumes_from_its_checkpoint_with_identical_metrics(
    ctx, tmp_path, cache_dir, db_url, monkeypatch
):
    reference = add_experiment(ctx.sessions, tiny_spec(epochs=4))
    assert run_job(reference, ctx) == "succeeded"

    eid = add_experiment(ctx.sessions, tiny_spec(epochs=4))
    original = DbReporter.on_checkpoint

    def on_checkpoint(self, info):
        original(self, info)
        if info.kind == "last" and info.epoch == 2:
            raise Crash

    monkeypatch.setattr(DbReporter, "on_checkpoint", on_checkpoint)
    with pytest.raises(Crash):
        run_job(eid, ctx)
    monkeypatch.setattr(DbReporter, "on_checkpoint", original)
    with ctx.sessions.begin() as s:  # the lease runs out; the reconciler puts it back
        s.get(Experiment, eid).lease_expires_at = utcnow() - timedelta(seconds=1)
        assert jobs.requeue_expired(s) == [eid]

    other = make_ctx(db_url, tmp_path, cache_dir, "w2")  # another machine: empty scratch
    resumed_from = []
    monkeypatch.setattr(
        DbReporter, "on_start", lambda self, info: resumed_from.append(info["start_epoch"])
    )
    assert run_job(eid, other) == "succeeded"
    assert resumed_from == [2]
    row = _row(other, eid)
    assert row.attempts == 2 and row.summary["epochs_run"] == 4
    assert _series(other, eid) == _series(ctx, reference)
    assert row.summary["metrics"] == _row(ctx, reference).summary["metrics"]
    other.engine.dispose()


def test_a_worker_that_lost_its_lease_stops_without_writing_the_outcome(ctx, monkeypatch):
    eid = add_experiment(ctx.sessions, tiny_spec(epochs=20))
    original = DbReporter.on_epoch

    def on_epoch(self, epoch, metrics):
        original(self, epoch, metrics)
        if epoch == 1:  # another worker took over while this one was paused
            with ctx.sessions.begin() as s:
                s.get(Experiment, eid).lease_owner = "w2"
            self._last_poll -= 10

    monkeypatch.setattr(DbReporter, "on_epoch", on_epoch)
    assert run_job(eid, ctx) == "lease lost"
    row = _row(ctx, eid)
    assert row.status == "running" and row.lease_owner == "w2" and row.last_epoch == 1


def test_should_cancel_reads_the_database_at_most_once_per_poll_interval(ctx):
    eid = add_experiment(ctx.sessions)
    with ctx.sessions.begin() as s:
        jobs.claim(s, eid, "w1", 30)
    now = [0.0]
    rep = DbReporter(
        ctx.sessions, ctx.store, eid, "w1", lease_s=30, heartbeat_s=5, clock=lambda: now[0]
    )
    calls = []
    real_poll = reporter_mod.jobs.poll

    def counting_poll(*args):
        calls.append(now[0])
        return real_poll(*args)

    reporter_mod.jobs.poll, saved = counting_poll, reporter_mod.jobs.poll
    try:
        for step in range(100):
            now[0] = step * 0.05  # 100 steps over 5 s
            assert rep.should_cancel() is False
    finally:
        reporter_mod.jobs.poll = saved
    assert 4 <= len(calls) <= 5
    before = _row(ctx, eid).lease_expires_at
    now[0] = 7.0  # a heartbeat is due
    assert rep.should_cancel() is False
    assert _row(ctx, eid).lease_expires_at > before


def test_a_worker_shutting_down_puts_its_run_back_and_the_next_one_resumes_it(ctx, monkeypatch):
    from worker import tasks

    eid = add_experiment(ctx.sessions, tiny_spec(epochs=6))
    original = DbReporter.on_epoch

    def on_epoch(self, epoch, metrics):
        original(self, epoch, metrics)
        if epoch == 2:
            tasks.SHUTTING_DOWN.set()  # what SIGTERM does through worker_shutting_down

    monkeypatch.setattr(DbReporter, "on_epoch", on_epoch)
    try:
        assert run_job(eid, ctx) == "released"
    finally:
        tasks.SHUTTING_DOWN.clear()
    row = _row(ctx, eid)
    assert (row.status, row.attempts, row.last_epoch) == ("queued", 0, 2)
    monkeypatch.setattr(DbReporter, "on_epoch", original)
    assert run_job(eid, ctx) == "succeeded"
    row = _row(ctx, eid)
    assert row.attempts == 1 and row.summary["epochs_run"] == 6
    assert [len(v) for v in _series(ctx, eid).values()][0] == 6


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_spec_asking_for_a_missing_gpu_fails_at_once_with_the_reason(ctx):
    eid = add_experiment(ctx.sessions, tiny_spec(device="cuda"))
    assert run_job(eid, ctx) == "failed"
    row = _row(ctx, eid)
    assert row.attempts == 1 and "DeviceUnavailable" in row.error and "CUDA" in row.error


def test_cuda_out_of_memory_fails_at_once_instead_of_being_retried(ctx, monkeypatch):
    from worker import tasks

    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(tasks, "run_experiment", oom)
    eid = add_experiment(ctx.sessions)
    assert run_job(eid, ctx) == "failed"
    row = _row(ctx, eid)
    assert row.attempts == 1 and row.lease_owner is None
    assert row.error.startswith("OutOfMemoryError: CUDA out of memory")


def test_an_unexpected_exception_is_recorded_as_failed_by_the_task_base_class(ctx, monkeypatch):
    from worker import tasks
    from worker.context import set_context

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(tasks, "run_experiment", boom)
    eid = add_experiment(ctx.sessions)
    set_context(ctx)
    try:
        result = tasks.run.apply(args=[eid])
    finally:
        set_context(None)
    assert result.failed()
    row = _row(ctx, eid)
    assert row.status == "failed" and row.error == "worker error: RuntimeError: boom"
    assert row.finished_at is not None and row.lease_owner is None
