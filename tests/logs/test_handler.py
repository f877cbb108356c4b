"""worker.run_logs: the run's records (its thread's, warnings, lines naming it) reach the table."""

from __future__ import annotations

import logging
import threading
import warnings

from service.db import jobs, logs
from service.db.models import Experiment
from tests.worker.helpers import add_experiment
from worker import run_logs

log = logging.getLogger("worker.tasks")  # the loggers the worker writes with
core = logging.getLogger("regcore.training")


def _claim(sessions, eid, worker="w1") -> int:
    with sessions.begin() as s:
        return jobs.claim(s, eid, worker, 30).attempts


def _messages(sessions, eid) -> list[str]:
    with sessions() as s:
        return [r.message for r in logs.since(s, eid, 0, 1000)]


def _capture(sessions, eid, attempt, **kw):
    kw.setdefault("max_lines", 100)
    return run_logs.capture(sessions, eid, "w1", attempt, budget_s=5, flush_s=0.05, **kw)


def _in_thread(fn) -> None:
    t = threading.Thread(target=fn)
    t.start()
    t.join()


def test_the_runs_records_are_kept_in_order_and_others_are_not(sessions, caplog):
    caplog.set_level(logging.INFO)
    eid = add_experiment(sessions)
    attempt = _claim(sessions, eid)
    with _capture(sessions, eid, attempt):
        log.info("experiment %s: attempt %d on w1", eid, attempt)
        core.info("epoch 1 done")
        core.debug("below the handler's level")
        warnings.warn("a regcore warning", UserWarning, stacklevel=1)
        _in_thread(lambda: log.warning("experiment %s: lease lost while polling", eid))
        _in_thread(lambda: log.info("another job's line"))
        try:
            raise ValueError("bad value")
        except ValueError:
            log.exception("experiment %s: worker error", eid)
    assert _messages(sessions, eid) == [
        f"experiment {eid}: attempt {attempt} on w1",
        "epoch 1 done",
        "UserWarning: a regcore warning",
        f"experiment {eid}: lease lost while polling",
        f"experiment {eid}: worker error: ValueError: bad value",  # no traceback
    ]
    with sessions() as s:
        levels = [(r.level, r.logger) for r in logs.since(s, eid, 0, 10)]
    assert levels[2] == ("WARNING", "py.warnings") and levels[1] == ("INFO", "regcore.training")
    assert run_logs._log_warning is not warnings.showwarning  # restored
    log.info("after the run")  # the handler is gone
    assert len(_messages(sessions, eid)) == 5


def test_lines_are_written_while_the_run_goes_on(sessions, caplog):
    caplog.set_level(logging.INFO)
    eid = add_experiment(sessions)
    with _capture(sessions, eid, _claim(sessions, eid)) as handler:
        core.info("first")
        done = threading.Event()
        for _ in range(100):  # the flusher writes within a few of its 0.05 s periods
            if _messages(sessions, eid) == ["first"]:
                done.set()
                break
            threading.Event().wait(0.05)
        assert done.is_set() and handler is not None


def test_a_nested_capture_of_the_same_run_keeps_each_line_once(sessions, caplog):
    caplog.set_level(logging.INFO)
    eid = add_experiment(sessions)
    attempt = _claim(sessions, eid)
    with _capture(sessions, eid, attempt), _capture(sessions, eid, attempt) as inner:
        assert inner is None
        core.info("once")
    assert _messages(sessions, eid) == ["once"]


def test_after_the_lease_is_lost_nothing_more_is_written(sessions, caplog):
    caplog.set_level(logging.INFO)
    eid = add_experiment(sessions)
    attempt = _claim(sessions, eid)
    with _capture(sessions, eid, attempt) as handler:
        core.info("mine")
        handler.flush()
        with sessions.begin() as s:  # another worker takes the row over
            row = s.get(Experiment, eid)
            row.lease_expires_at = row.created_at
        _claim(sessions, eid, "w2")
        core.info("too late")
        handler.flush()
        assert handler.refused
        core.info("dropped")
    assert _messages(sessions, eid) == ["mine"]


def test_the_buffer_keeps_only_the_newest_lines(sessions, caplog):
    caplog.set_level(logging.INFO)
    eid = add_experiment(sessions)
    attempt = _claim(sessions, eid)
    with _capture(sessions, eid, attempt, max_lines=3) as handler:
        handler._stop.set()  # no background flush: the buffer alone decides
        for i in range(10):
            core.info("line %d", i)
    assert _messages(sessions, eid) == ["line 7", "line 8", "line 9"]
