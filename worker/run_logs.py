"""The worker side of run logs: a ``logging.Handler`` that keeps one run's log lines.

While a worker runs an experiment, ``RunLogHandler`` sits on the root logger and keeps the
records that belong to the run: those of the task's thread (the worker's claim, resume, retry,
cancel and failure messages, regcore's logging, and warnings raised during the run, which are
routed to logging meanwhile) and those of other threads that name the experiment (the lease
keeper's). Records are buffered and written by a daemon thread every ``flush_s`` seconds, each
write one short transaction guarded by the lease (``service.db.logs.append``), so training never
waits on the database for a log line and a worker that lost the row writes nothing more.

Lines carry the message and, for an exception, its type and text (no traceback: paths on the
worker are nobody's business).
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

from sqlalchemy.orm import Session, sessionmaker

from service.db import logs
from worker.reporter import retry_db

log = logging.getLogger(__name__)


class RunLogHandler(logging.Handler):
    def __init__(
        self,
        sessions: sessionmaker[Session],
        experiment_id: str,
        worker_id: str,
        attempt: int,
        *,
        max_lines: int,
        budget_s: float,
        flush_s: float = 0.5,
        level: int = logging.INFO,
    ):
        super().__init__(level)
        self.sessions = sessions
        self.id = experiment_id
        self.worker_id = worker_id
        self.attempt = attempt
        self.max_lines = max(1, max_lines)
        self.budget_s = budget_s
        self.flush_s = flush_s
        self.thread = threading.get_ident()
        self.refused = False  # the row is no longer this attempt's: drop what comes
        self._buffer: list[logs.LogLine] = []
        self._buffer_lock = threading.Lock()
        self._write_lock = threading.Lock()  # one flush at a time, so lines keep their order
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None

    # --- collecting -------------------------------------------------------------------------
    def ours(self, record: logging.LogRecord) -> bool:
        if record.name == __name__:  # this module's own complaints would feed themselves
            return False
        if record.thread == self.thread:
            return True
        try:
            return self.id in record.getMessage()
        except Exception:  # noqa: BLE001 - a record whose arguments do not format
            return False

    def emit(self, record: logging.LogRecord) -> None:
        if self.refused or not self.ours(record):
            return
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001
            message = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            message = f"{message}: {type(exc).__name__}: {exc}"
        line = logs.LogLine(
            level=record.levelname,
            logger=record.name,
            message=message,
            created_at=datetime.fromtimestamp(record.created, UTC),
        )
        with self._buffer_lock:
            self._buffer.append(line)
            if len(self._buffer) > self.max_lines:  # only the newest are kept anyway
                del self._buffer[: len(self._buffer) - self.max_lines]

    # --- writing ----------------------------------------------------------------------------
    def flush(self) -> None:
        with self._write_lock:
            with self._buffer_lock:
                lines, self._buffer = self._buffer, []
            if not lines or self.refused:
                return

            def write() -> bool:
                with self.sessions.begin() as session:
                    return logs.append(
                        session, self.id, self.worker_id, self.attempt, lines, self.max_lines
                    )

            try:
                ok = retry_db(write, self.budget_s, f"writing log lines of {self.id}")
            except Exception:  # noqa: BLE001 - a log line must never fail the run
                log.warning("experiment %s: %d log lines lost", self.id, len(lines), exc_info=True)
                return
            if not ok:
                self.refused = True

    def start(self) -> None:
        self._flusher = threading.Thread(
            target=self._run, name=f"runlog-{self.id[:8]}", daemon=True
        )
        self._flusher.start()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            self.flush()

    def close(self) -> None:
        """Stop the flusher and write what is left (idempotent)."""
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(timeout=self.budget_s)
            self._flusher = None
        self.flush()
        super().close()


_warnings_log = logging.getLogger("py.warnings")


def _log_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    _warnings_log.warning("%s: %s", category.__name__, message)


#: experiments whose lines this process is keeping: the worker's process starts a capture for
#: the claim and the outcome, and the job's code for the job, which with inline isolation runs in
#: the same process (one capture then, not two) and otherwise in a process of its own
_active: set[str] = set()
_active_lock = threading.Lock()


class RunLog:
    """A started capture: the handler on the root logger, and warnings routed to logging."""

    def __init__(self, handler: RunLogHandler | None):
        self.handler = handler
        self._showwarning = warnings.showwarning
        self._closed = handler is None  # None: another capture of this run is active here
        if handler is None:
            return
        logging.getLogger().addHandler(handler)
        warnings.showwarning = _log_warning
        handler.start()

    def close(self) -> None:
        """Detach, restore ``warnings.showwarning`` and write the last lines (idempotent)."""
        if self._closed or self.handler is None:
            return
        self._closed = True
        logging.getLogger().removeHandler(self.handler)
        if warnings.showwarning is _log_warning:
            warnings.showwarning = self._showwarning
        self.handler.close()
        with _active_lock:
            _active.discard(self.handler.id)


def start(
    sessions: sessionmaker[Session],
    experiment_id: str,
    worker_id: str,
    attempt: int,
    *,
    max_lines: int,
    budget_s: float,
    flush_s: float = 0.5,
) -> RunLog:
    """Keep the log lines of ``attempt`` of a run until ``close()`` (a no-op handle when this
    process is keeping them already)."""
    with _active_lock:
        if experiment_id in _active:
            return RunLog(None)
        _active.add(experiment_id)
    return RunLog(
        RunLogHandler(
            sessions,
            experiment_id,
            worker_id,
            attempt,
            max_lines=max_lines,
            budget_s=budget_s,
            flush_s=flush_s,
        )  # fmt: skip
    )


@contextmanager
def capture(*args: Any, **kwargs: Any) -> Iterator[RunLogHandler | None]:
    """``start(...)`` for the length of a block."""
    run_log = start(*args, **kwargs)
    try:
        yield run_log.handler
    finally:
        run_log.close()
