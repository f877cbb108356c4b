"""The reporter's batched metric write (``jobs.record_epochs`` via ``reporter.write_epochs``):
many experiments' points in one transaction, each guarded by its lease, no duplicates. A lone
run's ``DbReporter.on_epoch`` takes the same path (per step one lease renewal and one write of
the points: on PostgreSQL one statement that stores them and upserts ``metric_latest``)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event, select

from service.db import jobs
from service.db.models import Experiment, Metric, MetricLatest, utcnow
from tests.worker.helpers import add_experiment
from worker.artifacts import LocalStore
from worker.reporter import DbReporter, write_epochs


@pytest.fixture
def db(sessions):
    """The engine beside the session factory (tests.services: SQLite, then PostgreSQL)."""
    return sessions.kw["bind"], sessions


def _pack(sessions, n: int, worker: str = "w1") -> list[str]:
    ids = [add_experiment(sessions) for _ in range(n)]
    for eid in ids:
        with sessions.begin() as s:
            assert jobs.claim(s, eid, worker, 30) is not None
    return ids


def _points(sessions):
    with sessions() as s:
        rows = s.execute(select(Metric.experiment_id, Metric.key, Metric.step, Metric.value))
        return sorted(tuple(r) for r in rows)


def test_a_pack_epoch_is_one_transaction_and_writes_every_member(db):
    engine, sessions = db
    ids = _pack(sessions, 5)
    commits = []
    event.listen(engine, "commit", lambda conn: commits.append(1))
    epoch = [
        jobs.EpochPoints(eid, 1, {"val_loss": i + 0.5, "lr": 0.1}) for i, eid in enumerate(ids)
    ]
    assert write_epochs(sessions, "w1", epoch, 30) == set(ids)
    assert len(commits) == 1
    expected = sorted(
        [(eid, "val_loss", 1, i + 0.5) for i, eid in enumerate(ids)]
        + [(eid, "lr", 1, 0.1) for eid in ids]
    )
    assert _points(sessions) == expected
    with sessions() as s:
        assert {r.id: r.last_epoch for r in s.scalars(select(Experiment))} == dict.fromkeys(ids, 1)


def test_a_member_whose_lease_is_lost_writes_nothing_and_the_others_still_do(db):
    _, sessions = db
    ids = _pack(sessions, 3)
    with sessions.begin() as s:  # the second member was taken over by another worker
        s.get(Experiment, ids[1]).lease_expires_at = utcnow() - timedelta(seconds=1)
    with sessions.begin() as s:
        assert jobs.claim(s, ids[1], "w2", 30) is not None
    epoch = [jobs.EpochPoints(eid, 1, {"val_loss": 1.0}) for eid in ids]
    assert write_epochs(sessions, "w1", epoch, 30) == {ids[0], ids[2]}
    assert [p[0] for p in _points(sessions)] == sorted([ids[0], ids[2]])
    with sessions() as s:
        assert s.scalars(select(MetricLatest.experiment_id)).all().count(ids[1]) == 0


def test_a_retried_epoch_adds_no_point_and_latest_never_goes_back(db):
    _, sessions = db
    (eid,) = _pack(sessions, 1)
    for step, loss in ((1, 0.9), (2, 0.5), (2, 0.5), (1, 0.9)):  # a retry, then a late epoch 1
        points = [jobs.EpochPoints(eid, step, {"val_loss": loss, "bad": float("nan")})]
        assert write_epochs(sessions, "w1", points, 30) == {eid}
    assert _points(sessions) == [(eid, "val_loss", 1, 0.9), (eid, "val_loss", 2, 0.5)]
    with sessions() as s:
        latest = s.execute(select(MetricLatest.key, MetricLatest.step, MetricLatest.value)).all()
    assert [tuple(r) for r in latest] == [("val_loss", 2, 0.5)]


def test_two_steps_of_one_member_in_one_call_keep_the_newest_as_latest(db):
    _, sessions = db
    (eid,) = _pack(sessions, 1)
    points = [jobs.EpochPoints(eid, 3, {"acc": 0.3}), jobs.EpochPoints(eid, 2, {"acc": 0.2})]
    assert write_epochs(sessions, "w1", points, 30) == {eid}
    with sessions() as s:
        assert s.execute(select(MetricLatest.step, MetricLatest.value)).one() == (3, 0.3)
    assert len(_points(sessions)) == 2


def test_metric_keys_with_quotes_commas_braces_and_backslashes_round_trip(db):
    _, sessions = db
    (eid,) = _pack(sessions, 1)
    keys = ['a"b', "c,d", "{e}", "f\\g", "sys/cpu %", "ünï", "NULL", " sp "]
    metrics = {k: i / 7 for i, k in enumerate(keys)}
    assert write_epochs(sessions, "w1", [jobs.EpochPoints(eid, 1, metrics)], 30) == {eid}
    assert {p[1]: p[3] for p in _points(sessions)} == metrics
    with sessions() as s:
        assert dict(s.execute(select(MetricLatest.key, MetricLatest.value)).all()) == metrics


def _take_over(sessions, eid: str) -> None:
    with sessions.begin() as s:
        s.get(Experiment, eid).lease_expires_at = utcnow() - timedelta(seconds=1)
    with sessions.begin() as s:
        assert jobs.claim(s, eid, "w2", 30) is not None


def _latest(sessions) -> dict[tuple[str, str], tuple[int, float]]:
    with sessions() as s:
        latest = MetricLatest
        rows = s.execute(select(latest.experiment_id, latest.key, latest.step, latest.value))
        return {(e, k): (step, v) for e, k, step, v in rows}


def _statements(engine) -> list[str]:
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    return seen


def _reporter(sessions, tmp_path, eid: str, worker: str = "w1") -> DbReporter:
    return DbReporter(
        sessions, LocalStore(tmp_path / "store"), eid, worker, lease_s=30, heartbeat_s=30
    )


def test_a_lone_runs_epoch_takes_the_packs_write_path_in_one_transaction(db, tmp_path):
    engine, sessions = db
    (eid,) = _pack(sessions, 1)
    reporter = _reporter(sessions, tmp_path, eid)
    statements = _statements(engine)
    commits: list[int] = []
    event.listen(engine, "commit", lambda conn: commits.append(1))
    reporter.on_epoch(1, {"val_loss": 0.5, "lr": 0.1})
    assert len(commits) == 1
    points = jobs._PG_POINTS if engine.dialect.name == "postgresql" else jobs._SQLITE_METRICS
    assert statements.count(points) == 1  # the same prebuilt statement as a pack's epoch
    assert sum("UPDATE experiments" in s for s in statements) == 1  # the one lease renewal
    assert _points(sessions) == [(eid, "lr", 1, 0.1), (eid, "val_loss", 1, 0.5)]
    assert _latest(sessions) == {(eid, "lr"): (1, 0.1), (eid, "val_loss"): (1, 0.5)}
    assert not reporter.lease_lost


def test_without_the_lease_a_lone_runs_epoch_is_refused_writes_nothing_and_stops(db, tmp_path):
    _, sessions = db
    (eid,) = _pack(sessions, 1)
    reporter = _reporter(sessions, tmp_path, eid)
    reporter.on_epoch(1, {"val_loss": 0.9})
    _take_over(sessions, eid)
    with sessions() as s:
        before = s.get(Experiment, eid)
        lease = (before.lease_owner, before.lease_expires_at, before.last_epoch)
    reporter.on_epoch(2, {"val_loss": 0.5})
    assert reporter.lease_lost
    assert reporter.should_cancel()
    assert _points(sessions) == [(eid, "val_loss", 1, 0.9)]  # epoch 2 was not written
    assert _latest(sessions) == {(eid, "val_loss"): (1, 0.9)}
    with sessions() as s:
        row = s.get(Experiment, eid)
        assert (row.lease_owner, row.lease_expires_at, row.last_epoch) == lease  # w2's, as it was


def test_a_resent_epoch_through_the_reporter_adds_no_point_and_keeps_the_newest_latest(
    db, tmp_path
):
    _, sessions = db
    (eid,) = _pack(sessions, 1)
    reporter = _reporter(sessions, tmp_path, eid)
    for epoch, loss in ((1, 0.9), (2, 0.5), (2, 0.5), (1, 0.9)):  # a retry, then a late epoch 1
        reporter.on_epoch(epoch, {"val_loss": loss})
    assert not reporter.lease_lost
    assert _points(sessions) == [(eid, "val_loss", 1, 0.9), (eid, "val_loss", 2, 0.5)]
    assert _latest(sessions) == {(eid, "val_loss"): (2, 0.5)}


def test_many_experiments_at_several_steps_in_one_call_are_each_written_once(db):
    engine, sessions = db
    ids = _pack(sessions, 4)
    _take_over(sessions, ids[3])  # one member's lease is lost: its points are dropped
    points = [
        jobs.EpochPoints(ids[0], 2, {"acc": 0.2}),
        jobs.EpochPoints(ids[1], 1, {"acc": 0.1, "loss": 1.0}),
        jobs.EpochPoints(ids[0], 1, {"acc": 0.1}),
        jobs.EpochPoints(ids[2], 2, {"acc": 0.25}),
        jobs.EpochPoints(ids[1], 1, {"loss": 0.9}),  # the same step again: merged, newer wins
        jobs.EpochPoints(ids[3], 2, {"acc": 0.99}),
        jobs.EpochPoints(ids[2], 3, {"acc": 0.3, "nan": float("nan")}),
    ]
    statements = _statements(engine)
    commits: list[int] = []
    event.listen(engine, "commit", lambda conn: commits.append(1))
    assert write_epochs(sessions, "w1", points, 30) == set(ids[:3])
    assert len(commits) == 1
    if engine.dialect.name == "postgresql":  # per step: one renewal and one write of its points
        assert statements.count(jobs._PG_POINTS) == 3
        assert sum("UPDATE experiments" in s for s in statements) == 3
    assert _points(sessions) == sorted(
        [
            (ids[0], "acc", 1, 0.1),
            (ids[0], "acc", 2, 0.2),
            (ids[1], "acc", 1, 0.1),
            (ids[1], "loss", 1, 0.9),
            (ids[2], "acc", 2, 0.25),
            (ids[2], "acc", 3, 0.3),
        ]
    )
    assert _latest(sessions) == {
        (ids[0], "acc"): (2, 0.2),
        (ids[1], "acc"): (1, 0.1),
        (ids[1], "loss"): (1, 0.9),
        (ids[2], "acc"): (3, 0.3),
    }
    with sessions() as s:
        epochs = {r.id: r.last_epoch for r in s.scalars(select(Experiment))}
    assert [epochs[i] for i in ids[:3]] == [2, 1, 3]  # the newest step each member reached
    assert write_epochs(sessions, "w1", points, 30) == set(ids[:3])  # the call resent
    assert len(_points(sessions)) == 6


def test_a_call_whose_leases_are_all_lost_writes_nothing(db):
    _, sessions = db
    ids = _pack(sessions, 2)
    for eid in ids:
        _take_over(sessions, eid)
    points = [jobs.EpochPoints(eid, 1, {"acc": 0.5}) for eid in ids]
    assert write_epochs(sessions, "w1", points, 30) == set()
    assert _points(sessions) == []
    assert _latest(sessions) == {}
    with sessions() as s:
        assert {r.lease_owner for r in s.scalars(select(Experiment))} == {"w2"}
    assert write_epochs(sessions, "w1", [], 30) == set()
