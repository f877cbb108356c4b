"""service.db.logs: seqs in order per experiment, newest kept, only the run's worker writes."""

from __future__ import annotations

from sqlalchemy import select

from service.db import jobs, logs
from service.db.models import Experiment, RunLog
from tests.worker.helpers import add_experiment


def _lines(*messages: str) -> list[logs.LogLine]:
    return [logs.LogLine("INFO", "test", m) for m in messages]


def _append(sessions, eid, worker, attempt, lines, max_lines=100) -> bool:
    with sessions.begin() as s:
        return logs.append(s, eid, worker, attempt, lines, max_lines)


def _all(sessions, eid) -> list[tuple[int, str]]:
    with sessions() as s:
        return [(r.seq, r.message) for r in logs.since(s, eid, 0, 1000)]


def _claim(sessions, eid, worker) -> int:
    with sessions.begin() as s:
        return jobs.claim(s, eid, worker, 30).attempts


def test_lines_are_numbered_in_order_and_read_back_after_a_seq(sessions):
    eid = add_experiment(sessions)
    attempt = _claim(sessions, eid, "w1")
    assert _append(sessions, eid, "w1", attempt, _lines("a", "b"))
    assert _append(sessions, eid, "w1", attempt, _lines("c"))
    assert _all(sessions, eid) == [(1, "a"), (2, "b"), (3, "c")]
    with sessions() as s:
        assert [r.message for r in logs.since(s, eid, 1, 1)] == ["b"]
        assert logs.state(s, eid)[:2] == ("running", 3)
        assert all(r.attempt == attempt for r in logs.since(s, eid, 0, 10))


def test_only_the_newest_max_lines_are_kept_and_seqs_go_on(sessions):
    eid = add_experiment(sessions)
    attempt = _claim(sessions, eid, "w1")
    for batch in (["1", "2", "3", "4"], ["5", "6"], ["7", "8", "9", "10", "11", "12"]):
        assert _append(sessions, eid, "w1", attempt, _lines(*batch), max_lines=5)
    assert _all(sessions, eid) == [(s, str(s)) for s in range(8, 13)]
    assert _append(sessions, eid, "w1", attempt, _lines(*map(str, range(13, 21))), max_lines=5)
    assert _all(sessions, eid) == [(s, str(s)) for s in range(16, 21)]
    other = add_experiment(sessions)  # numbering and retention are per experiment
    assert _append(sessions, other, "w2", _claim(sessions, other, "w2"), _lines("x"))
    assert _all(sessions, other) == [(1, "x")]
    assert len(_all(sessions, eid)) == 5


def test_another_worker_or_a_superseded_attempt_writes_nothing(sessions):
    eid = add_experiment(sessions)
    first = _claim(sessions, eid, "w1")
    assert not _append(sessions, eid, "w2", first, _lines("not the owner"))
    with sessions.begin() as s:  # w1's lease expires and w2 takes over (attempt 2)
        row = s.get(Experiment, eid)
        row.lease_expires_at = row.created_at
    second = _claim(sessions, eid, "w2")
    assert second == first + 1
    assert not _append(sessions, eid, "w1", first, _lines("stale worker"))
    assert _append(sessions, eid, "w2", second, _lines("claimed"))
    with sessions.begin() as s:
        assert jobs.finish(s, eid, "w2", "succeeded")
    # the outcome line comes right after the write that ended the lease
    assert _append(sessions, eid, "w2", second, _lines("succeeded"))
    assert not _append(sessions, eid, "w1", first, _lines("stale, after the end"))
    assert _all(sessions, eid) == [(1, "claimed"), (2, "succeeded")]


def test_deleting_an_experiment_deletes_its_lines(sessions):
    eid = add_experiment(sessions)
    assert _append(sessions, eid, "w1", _claim(sessions, eid, "w1"), _lines("a"))
    with sessions.begin() as s:
        s.delete(s.get(Experiment, eid))
    with sessions() as s:
        assert s.scalars(select(RunLog).where(RunLog.experiment_id == eid)).all() == []


def test_concurrent_writers_get_distinct_contiguous_seqs_in_their_own_order(sessions):
    import threading

    eid = add_experiment(sessions)
    attempt = _claim(sessions, eid, "w1")  # the worker's process and its job's process

    def writer(name: str) -> None:
        for i in range(15):
            assert _append(sessions, eid, "w1", attempt, _lines(f"{name}{i}a", f"{name}{i}b"))

    threads = [threading.Thread(target=writer, args=(n,)) for n in "pqr"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = _all(sessions, eid)
    assert [seq for seq, _ in got] == list(range(1, 91))
    for name in "pqr":
        mine = [m for _, m in got if m.startswith(name)]
        assert mine == [f"{name}{i}{half}" for i in range(15) for half in "ab"]


def test_appending_never_updates_the_experiment_row(sessions):
    """The lease's writes stay the lease holder's: a log write after the outcome (the outcome
    line) must not touch the row (the fault tests' audit flags any such write)."""
    from sqlalchemy import event

    eid = add_experiment(sessions)
    attempt = _claim(sessions, eid, "w1")
    with sessions.begin() as s:
        assert jobs.finish(s, eid, "w1", "succeeded")
    statements: list[str] = []
    engine = sessions.kw["bind"]

    def record(conn, cursor, statement, *args):
        statements.append(statement.lower())

    event.listen(engine, "before_cursor_execute", record)
    try:
        assert _append(sessions, eid, "w1", attempt, _lines("experiment succeeded"), max_lines=1)
        assert _append(sessions, eid, "w1", attempt, _lines("one more"), max_lines=1)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert not [s for s in statements if s.lstrip().startswith("update experiments")]
    assert _all(sessions, eid) == [(2, "one more")]
