"""Keeping a claimed run's lease alive, and the worker's liveness file.

The lease must outlive everything the task does while it holds the row, not only training steps:
generating the data, fetching the checkpoint, evaluating at an epoch's end, uploading
checkpoints, the final evaluation. So a daemon thread renews it every ``heartbeat_seconds``
from claim to finish (each renewal its own short transaction); when a renewal finds the row is
no longer ours it says so through ``on_lost`` and the run stops at its next check.

The liveness file (``REGLAB_WORKER_HEARTBEAT_FILE``) is the container's healthcheck: a solo-pool
worker running a job cannot answer ``celery inspect ping``, so instead the lease thread touches
the file after each successful renewal and an idle timer touches it while no run is held.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from service.db import jobs
from service.observability import counters
from worker.reporter import retry_db

log = logging.getLogger(__name__)

#: How often the idle timer touches the liveness file (the healthcheck allows 60 s).
IDLE_TOUCH_S = 5.0

_holding_count = 0  # runs whose keeper is alive (one with the solo pool)
_count_lock = threading.Lock()


def touch(path: Path | None) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a"):
            os.utime(path)
    except OSError as err:  # the healthcheck reports it; training must not fail over it
        log.warning("could not touch the liveness file %s: %s", path, err)


def holding_a_run() -> bool:
    with _count_lock:
        return _holding_count > 0


class LeaseKeeper:
    """Renews ``experiment_id``'s lease every ``every_s`` seconds on a daemon thread."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        experiment_id: str,
        worker_id: str,
        *,
        lease_s: float,
        every_s: float,
        on_lost: Callable[[], None],
        alive_file: Path | None = None,
    ):
        self.sessions = sessions
        self.id = experiment_id
        self.worker_id = worker_id
        self.lease_s = lease_s
        self.every_s = every_s
        self.on_lost = on_lost
        self.alive_file = alive_file
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        global _holding_count
        with _count_lock:
            _holding_count += 1
        touch(self.alive_file)
        self._thread = threading.Thread(target=self._run, name=f"lease-{self.id[:8]}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Idempotent; called before the task's last write and again in its ``finally``."""
        global _holding_count
        if self._thread is None or self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=self.lease_s)
        with _count_lock:
            _holding_count -= 1

    def beat(self) -> bool:
        """One renewal; False only when the row is no longer ours."""

        def write() -> bool:
            with self.sessions.begin() as session:
                return jobs.heartbeat(session, self.id, self.worker_id, self.lease_s)

        try:
            ok = retry_db(write, self.lease_s, "renewing the lease")
        except Exception:  # noqa: BLE001 - the next renewal or the lease-guarded writes decide
            log.warning("experiment %s: could not renew the lease", self.id, exc_info=True)
            counters.lease_renewal("failed")
            return True
        counters.lease_renewal("renewed" if ok else "lost")
        if ok:
            touch(self.alive_file)
        return ok

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            if not self.beat():
                if not self._stop.is_set():  # not the task's own finish racing this beat
                    self.on_lost()
                return


def start_idle_heartbeat(path: Path, every_s: float = IDLE_TOUCH_S) -> threading.Event:
    """Touch ``path`` every ``every_s`` seconds while no run is held (a run's keeper touches it
    then); set the returned event to stop."""
    stop = threading.Event()

    def loop() -> None:
        while True:
            if not holding_a_run():
                touch(path)
            if stop.wait(every_s):
                return

    threading.Thread(target=loop, name="liveness", daemon=True).start()
    return stop
