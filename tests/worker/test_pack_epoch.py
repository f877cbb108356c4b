"""A pack's epoch is one write: its members' reporters hold their points (``PackEpoch``) and
``flush`` stores them all in one transaction; a member whose lease was lost writes nothing and
stops, the others are stored."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event, select

from service.db import jobs
from service.db.models import Experiment, Metric, utcnow
from tests.worker.helpers import add_experiment
from worker.artifacts import LocalStore
from worker.reporter import DbReporter, PackEpoch


def _members(sessions, tmp_path, n: int) -> tuple[PackEpoch, list[DbReporter]]:
    ids = [add_experiment(sessions) for _ in range(n)]
    for eid in ids:
        with sessions.begin() as s:
            assert jobs.claim(s, eid, "w1", 30) is not None
    pack = PackEpoch(sessions, "w1", 30)
    store = LocalStore(tmp_path / "store")
    reps = [
        DbReporter(sessions, store, eid, "w1", lease_s=30, heartbeat_s=10, pack_epoch=pack)
        for eid in ids
    ]
    return pack, reps


def _stored(sessions) -> list[tuple[str, int]]:
    with sessions() as s:
        return sorted(tuple(r) for r in s.execute(select(Metric.experiment_id, Metric.step)))


def test_the_members_points_are_held_until_the_flush_then_written_in_one_commit(sessions, tmp_path):
    pack, reps = _members(sessions, tmp_path, 4)
    for i, rep in enumerate(reps):
        rep.on_epoch(1, {"val_loss": 1.0 + i})
    assert _stored(sessions) == []  # nothing written before the pack's epoch is complete
    commits: list[int] = []
    event.listen(sessions.kw["bind"], "commit", lambda conn: commits.append(1))
    pack.flush(1)
    assert len(commits) == 1
    assert _stored(sessions) == sorted((r.id, 1) for r in reps)
    with sessions() as s:
        assert {s.get(Experiment, r.id).last_epoch for r in reps} == {1}
    assert not any(r.lease_lost for r in reps)
    pack.flush(1)  # nothing held: nothing written
    assert len(commits) == 1


def test_a_member_that_lost_its_lease_writes_nothing_and_stops(sessions, tmp_path):
    pack, reps = _members(sessions, tmp_path, 3)
    lost = reps[1].id
    with sessions.begin() as s:
        s.get(Experiment, lost).lease_expires_at = utcnow() - timedelta(seconds=1)
    with sessions.begin() as s:
        assert jobs.claim(s, lost, "w2", 30) is not None
    for rep in reps:
        rep.on_epoch(1, {"val_loss": 0.5})
    pack.flush(1)
    assert _stored(sessions) == sorted((r.id, 1) for r in reps if r.id != lost)
    assert [r.lease_lost for r in reps] == [False, True, False]
    assert reps[1].should_cancel() and not reps[0].should_cancel()
    reps[1].on_epoch(2, {"val_loss": 0.4})  # a lost member holds nothing more
    assert pack.held == []
