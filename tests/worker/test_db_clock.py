"""service.db.clock and service.db.outage: lease times from the database's clock, and a
read-only database as an outage to wait out (on SQLite and PostgreSQL where it applies)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from service.db import jobs, models, workers
from service.db.clock import db_now
from service.db.migrate import upgrade_to_head
from service.db.models import Experiment, utcnow
from service.db.outage import read_only, unreachable
from service.db.session import make_engine, make_sessionmaker
from tests.worker.helpers import add_experiment
from worker.reporter import retry_db


def test_db_now_compares_with_stored_timestamps_on_both_backends(sessions):
    """SQLite keeps UTCDateTime as text: db_now must be the same text form to compare right."""
    eid = add_experiment(sessions)
    with sessions.begin() as s:
        row = s.get(Experiment, eid)
        row.status, row.lease_expires_at = "running", utcnow() + timedelta(seconds=2)
    with sessions() as s:
        now = s.scalar(select(db_now()))
        assert abs((now - utcnow()).total_seconds()) < 1
        live = s.scalar(select(Experiment.lease_expires_at > db_now()))
        gone = s.scalar(select(Experiment.lease_expires_at > db_now(5)))
        later = s.scalar(select(db_now(-600.5)))
    assert live is True or live == 1
    assert gone is False or gone == 0
    assert (now - later).total_seconds() == pytest.approx(600.5, abs=1.0)


def test_leases_are_written_and_judged_by_the_database_clock_not_the_workers(sessions, monkeypatch):
    """A worker whose clock is 10 minutes behind or ahead: its lease is still one lease from
    the database's now, and another worker cannot take it over while it lasts."""
    eid = add_experiment(sessions)

    def skew(seconds: int) -> None:
        off = timedelta(seconds=seconds)
        monkeypatch.setattr(models, "utcnow", lambda: utcnow() + off)
        monkeypatch.setattr(jobs, "utcnow", models.utcnow)

    def lease_left() -> timedelta:
        with sessions() as s:
            return s.get(Experiment, eid).lease_expires_at - s.scalar(select(db_now()))

    skew(-600)  # the slow worker claims and renews
    with sessions.begin() as s:
        assert jobs.claim(s, eid, "slow", 30) is not None
    assert timedelta(seconds=29) < lease_left() <= timedelta(seconds=30)
    with sessions.begin() as s:
        assert jobs.record_epoch(s, eid, "slow", 1, {"val_loss": 1.0}, 30)
    assert timedelta(seconds=29) < lease_left() <= timedelta(seconds=30)
    skew(600)  # the fast worker and a fast reconciler see a live lease
    with sessions.begin() as s:
        assert jobs.claim(s, eid, "fast", 30) is None
        assert jobs.settle_unclaimable(s, eid) is None
        assert jobs.requeue_expired(s) == []
    with sessions.begin() as s:
        assert jobs.heartbeat(s, eid, "slow", -1)  # a lease that ended a second ago
    with sessions.begin() as s:
        assert jobs.requeue_expired(s) == [eid]


def test_a_worker_heartbeat_counts_by_the_database_clock(sessions, monkeypatch):
    monkeypatch.setattr(models, "utcnow", lambda: utcnow() - timedelta(hours=1))
    with sessions.begin() as s:
        workers.beat(s, "node@host:1", ["cpu"])
    with sessions() as s:
        assert workers.consumers(s) == {"cpu": 1}


@pytest.fixture
def pg_database(postgres_admin_url, new_postgres_database):
    url = new_postgres_database()
    upgrade_to_head(url)
    admin = make_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    name = make_url(url).database

    def read_only_db(on: bool) -> None:
        setting = "SET" if on else "RESET"
        value = " = on" if on else ""
        with admin.connect() as conn:
            conn.execute(
                text(f'ALTER DATABASE "{name}" {setting} default_transaction_read_only{value}')
            )

    yield url, read_only_db
    admin.dispose()


def test_a_read_only_database_is_an_outage_and_its_connections_are_replaced(pg_database):
    url, read_only_db = pg_database
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    read_only_db(True)
    with pytest.raises(DBAPIError) as refused:
        add_experiment(sessions)
    assert read_only(refused.value) and unreachable(refused.value)
    assert refused.value.connection_invalidated  # the pool will not hand it out again
    # writable again: the pooled connections opened while read-only are gone, so a retry works
    with sessions() as s:
        s.execute(text("SELECT 1"))  # a read opens (and pools) a read-only session
    read_only_db(False)
    tries = []

    def write() -> str:
        tries.append(1)
        return add_experiment(sessions)

    eid = retry_db(write, 10, "a test write")
    assert eid and len(tries) == 2  # the pooled read-only session failed once, then a fresh one
    with sessions() as s:
        assert s.get(Experiment, eid) is not None
    engine.dispose()


def test_a_bad_statement_is_not_an_outage(pg_database):
    """(PostgreSQL: SQLite's driver reports a bad statement as an OperationalError too.)"""
    engine = make_engine(pg_database[0])
    with pytest.raises(DBAPIError) as bad, engine.connect() as conn:
        conn.execute(text("SELECT no_such_column FROM experiments"))
    assert not unreachable(bad.value) and not read_only(bad.value)
    engine.dispose()
