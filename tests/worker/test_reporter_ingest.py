"""The reporter's batched metric write (``jobs.record_epochs`` via ``reporter.write_epochs``):
many experiments' points in one transaction, each guarded by its lease, no duplicates."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event, select

from service.db import jobs
from service.db.migrate import upgrade_to_head
from service.db.models import Experiment, Metric, MetricLatest, utcnow
from service.db.session import make_engine, make_sessionmaker
from tests.worker.helpers import add_experiment
from worker.reporter import write_epochs


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ingest.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    upgrade_to_head(url)
    engine = make_engine(url)
    yield engine, make_sessionmaker(engine)
    engine.dispose()


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
