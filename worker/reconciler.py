"""The reconciler: makes the broker agree with the database, the source of truth.

* ``running`` rows whose lease expired (their worker died) go back to ``queued`` — or end
  ``failed`` once ``max_attempts`` is used up, ``cancelled`` if a cancel was asked for;
* ``queued`` rows that were never enqueued (the API's send failed), or enqueued long ago (a broker
  that lost its messages), are sent again.

Sending twice is safe: only one worker can claim a row. Runs in ``reglab serve`` as a thread and
once per call as ``reglab reconcile``. It needs no torch and no task code, only the Celery client.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta

from celery import Celery
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.db import jobs, sweeps
from service.db.models import Experiment, utcnow
from service.queue import enqueue

log = logging.getLogger(__name__)

#: A queued row's message may sit behind long jobs; only after this long is it sent again.
STALE_QUEUED_S = 600.0
#: Leave alone rows the API committed but has not enqueued yet.
GRACE_S = 5.0


@dataclass
class Report:
    requeued: list[str] = field(default_factory=list)
    enqueued: list[str] = field(default_factory=list)
    #: sweep experiments asked to stop by early stopping, with the reasons
    stopped: dict[str, str] = field(default_factory=dict)


def reconcile_once(
    sessions: sessionmaker[Session],
    celery: Celery,
    *,
    stale_after_s: float = STALE_QUEUED_S,
    grace_s: float = GRACE_S,
) -> Report:
    report = Report()
    now = utcnow()
    with sessions.begin() as session:
        report.requeued = jobs.requeue_expired(session, now)
    with sessions.begin() as session:  # early stopping, launches within max_concurrent
        swept = sweeps.tick(session)
    report.stopped = swept.stopped
    for experiment_id, queue in swept.launched:
        if enqueue(celery, experiment_id, queue):
            with sessions.begin() as session:
                jobs.mark_enqueued(session, experiment_id)
    with sessions() as session:
        ids = jobs.stale_queued(
            session, now - timedelta(seconds=stale_after_s), now - timedelta(seconds=grace_s)
        )
        rows = session.execute(
            select(Experiment.id, Experiment.queue).where(Experiment.id.in_(ids))
        )
        queues = {eid: queue for eid, queue in rows}
    for experiment_id in ids:
        if enqueue(celery, experiment_id, queues.get(experiment_id, "cpu")):
            with sessions.begin() as session:
                jobs.mark_enqueued(session, experiment_id)
            report.enqueued.append(experiment_id)
    if report.requeued or report.enqueued:
        log.info("reconciler: requeued %s, enqueued %s", report.requeued, report.enqueued)
    for experiment_id, reason in report.stopped.items():
        log.info("reconciler: experiment %s %s", experiment_id, reason)
    return report


class Reconciler(threading.Thread):
    """``reconcile_once`` every ``interval_s`` seconds until ``stop()``."""

    def __init__(self, sessions: sessionmaker[Session], celery: Celery, interval_s: float, **kw):
        super().__init__(name="reglab-reconciler", daemon=True)
        self.sessions = sessions
        self.celery = celery
        self.interval_s = interval_s
        self.kw = kw
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                reconcile_once(self.sessions, self.celery, **self.kw)
            except Exception:  # noqa: BLE001 - a database blip must not end the thread
                log.exception("reconciler pass failed; retrying in %.0f s", self.interval_s)
            self._stop_event.wait(self.interval_s)

    def stop(self) -> None:
        self._stop_event.set()
