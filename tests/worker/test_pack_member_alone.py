"""A sweep trial that trained in a pack and is run again alone (``REGLAB_PACK_SIZE=1`` by then,
or the only one left of its pack) goes on from its pack-member checkpoint, in process on SQLite:
its log says it resumes, every metric point is stored once, and it ends as its lone run."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from service.db import jobs
from service.db.migrate import upgrade_to_head
from service.db.models import Experiment, Metric, utcnow
from tests.worker.helpers import add_experiment, make_ctx, tiny_spec
from worker import packs
from worker.reporter import DbReporter
from worker.tasks import run_job

EPOCHS = 4


class Crash(BaseException):
    """Stands in for SIGKILL: nothing in the task catches it."""


@pytest.fixture
def db_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'worker.db'}"
    upgrade_to_head(url)
    return url


def _series(ctx, eid) -> dict[str, list[tuple[int, float]]]:
    with ctx.sessions() as s:
        q = select(Metric.key, Metric.step, Metric.value).where(Metric.experiment_id == eid)
        rows = s.execute(q.order_by(Metric.step)).all()
    out: dict[str, list[tuple[int, float]]] = {}
    for key, step, value in rows:
        if not key.startswith("sys_"):  # system metrics measure the machine, run to run
            out.setdefault(key, []).append((step, value))
    return out


def test_a_pack_member_run_again_alone_resumes_from_its_pack_checkpoint(
    db_url, tmp_path, cache_dir, monkeypatch
):
    from service.queue import make_celery

    ctx = make_ctx(db_url, tmp_path, cache_dir, "w1", broker_dir=tmp_path / "broker")
    monkeypatch.setattr(packs, "app", make_celery(ctx.settings))  # its own broker folder
    monkeypatch.setattr(packs, "PACK_CHECKPOINT_EVERY", 2)
    member = {**tiny_spec(epochs=EPOCHS, momentum=0.9), "regularizers": [
        {"name": "l2", "strength": 1e-3}, {"name": "dropout", "p": 0.2}]}  # fmt: skip
    other = {**member, "regularizers": [
        {"name": "l2", "strength": 1e-2}, {"name": "dropout", "p": 0.4}]}  # fmt: skip
    reference = add_experiment(ctx.sessions, member)
    assert run_job(reference, ctx) == "succeeded"

    eid, mate = add_experiment(ctx.sessions, member), add_experiment(ctx.sessions, other)
    original = DbReporter.on_checkpoint

    def on_checkpoint(self, info):
        original(self, info)
        if self.id == eid and info.kind == "last" and info.epoch == 2:
            raise Crash  # the worker dies after the pack's epoch-2 checkpoint of this member

    monkeypatch.setattr(DbReporter, "on_checkpoint", on_checkpoint)
    with pytest.raises(Crash):
        packs.run_pack_job([eid, mate], ctx)
    monkeypatch.setattr(DbReporter, "on_checkpoint", original)
    with ctx.sessions.begin() as s:  # the lease runs out; the reconciler puts it back
        s.get(Experiment, eid).lease_expires_at = utcnow() - timedelta(seconds=1)
        assert eid in jobs.requeue_expired(s)
        last = jobs.latest_checkpoint(s, eid, "last")
        assert last is not None and last.epoch == 2

    # it comes back alone (as with REGLAB_PACK_SIZE=1): another machine, an empty scratch
    again = make_ctx(db_url, tmp_path, cache_dir, "w2")
    started = []
    monkeypatch.setattr(DbReporter, "on_start", lambda self, info: started.append(info))
    assert run_job(eid, again) == "succeeded"
    assert [(i["resumed"], i["start_epoch"]) for i in started] == [(True, 2)]
    with again.sessions() as s:
        row, ref = s.get(Experiment, eid), s.get(Experiment, reference)
        assert row is not None and ref is not None
        assert row.attempts == 2 and row.summary["epochs_run"] == EPOCHS
        assert row.summary["metrics"] == ref.summary["metrics"]  # the same end, to the bit
    got, want = _series(again, eid), _series(ctx, reference)
    assert set(got) == set(want)
    for key, points in want.items():
        # every epoch once; epochs 1-2 are the pack's (its evaluation agrees to rounding)
        assert [p for p, _ in got[key]] == list(range(1, EPOCHS + 1)), key
        assert [v for _, v in got[key]] == pytest.approx([v for _, v in points], abs=1e-6), key
    again.engine.dispose()
    ctx.engine.dispose()
