"""The reconciler: makes the broker agree with the database, the source of truth.

* ``running`` rows whose lease expired (their worker died) go back to ``queued`` — or end
  ``failed`` once ``max_attempts`` is used up, ``cancelled`` if a cancel was asked for;
* ``queued`` rows that were never enqueued (the API's send failed), or enqueued long ago (a broker
  that lost its messages), are sent again, except on a queue no live worker consumes
  (``service.db.workers``): such a run says ``waiting for a worker on queue ...`` and its one
  message waits for the first consumer, instead of a new copy every stale period.

Sending twice is safe: only one worker can claim a row. Runs in ``reglab serve`` as a thread and
once per call as ``reglab reconcile``. It needs no torch and no task code, only the Celery client.

It also sweeps a local artifact store for the ``.part`` files of uploads whose process was killed
between the copy and the rename (``PartFileSweeper``).
"""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from celery import Celery
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.db import jobs, sweeps, workers
from service.db.models import Experiment, utcnow
from service.observability import counters
from service.queue import enqueue
from service.sweeps import packing

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
    #: leftover ``.part`` files deleted from the store (paths relative to its root)
    removed_parts: list[str] = field(default_factory=list)
    #: queues with queued runs and no live consumer (their runs say so; no message re-sent)
    idle_queues: list[str] = field(default_factory=list)


#: the temporary names ``worker.artifacts.LocalStore.put`` copies to before its rename
PART_FILE = re.compile(r"^\..+\.[0-9a-f]{32}\.part$")
#: directory entries one tick looks at: a store of any size costs each tick the same
PART_SCAN_ENTRIES = 2000


class PartFileSweeper:
    """Deletes the ``.part`` files that killed uploads left in a local artifact store.

    A live upload renames (or deletes) its temporary file right after its last write, so one not
    written for ``max_age_s`` belongs to a process that died. Each ``tick`` looks at no more than
    ``max_entries`` directory entries; the walk resumes there on the next tick and starts over
    once it has covered the store. Only names of the ``PART_FILE`` form are touched, never
    through a symbolic link.
    """

    def __init__(
        self, root: str | Path, max_age_s: float = 3600.0, max_entries: int = PART_SCAN_ENTRIES
    ):
        self.root = Path(root)
        self.max_age_s = max_age_s
        self.max_entries = max_entries
        self._walk: Iterator[os.DirEntry[str]] | None = None

    def tick(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        removed: list[str] = []
        if self._walk is None:
            self._walk = _entries(self.root)
        for _ in range(self.max_entries):
            entry = next(self._walk, None)
            if entry is None:
                self._walk = None  # covered the store; the next tick starts over
                break
            if not PART_FILE.match(entry.name):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < self.max_age_s:
                    continue
                os.unlink(entry.path)
            except FileNotFoundError:
                continue  # renamed into place or removed since it was listed
            except OSError as err:
                log.warning("reconciler: cannot remove %s: %s", entry.path, err)
                continue
            removed.append(Path(entry.path).relative_to(self.root).as_posix())
        return removed


def _entries(root: Path) -> Iterator[os.DirEntry[str]]:
    """Every entry under ``root``, listed lazily, without following symbolic links."""
    stack = [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as listing:
                for entry in listing:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    yield entry
        except OSError:  # no store yet, or a folder removed or unreadable meanwhile
            continue


def part_file_sweeper(artifacts: str, max_age_s: float) -> PartFileSweeper | None:
    """The sweeper of ``REGLAB_ARTIFACTS`` when it is a folder; None for ``s3://`` (an S3 upload
    is atomic per object: an abandoned multipart upload is the bucket's lifecycle rule's job)."""
    if artifacts.startswith("s3://"):
        return None
    return PartFileSweeper(artifacts, max_age_s)


def send(
    sessions: sessionmaker[Session], celery: Celery, rows: Sequence[tuple[str | list[str], str]]
) -> list[str]:
    """Enqueue each ``(experiment id, queue)`` (or ``(ids, queue)``: one pack's message) and
    stamp ``enqueued_at``; returns the ids sent (a refused send stays unstamped: the next pass
    sends it again, one by one)."""
    sent: list[str] = []
    for experiment_id, queue in rows:
        ids = [experiment_id] if isinstance(experiment_id, str) else experiment_id
        if enqueue(celery, ids, queue):
            with sessions.begin() as session:
                for eid in ids:
                    jobs.mark_enqueued(session, eid)
            sent += ids
    return sent


def advance_sweep(
    sessions: sessionmaker[Session], celery: Celery, experiment_id: str, pack_size: int | None = 1
) -> list[str]:
    """After a run ends: its sweep's next trials, launched and sent now (``sweeps.advance``)."""
    with sessions.begin() as session:
        swept = sweeps.advance(session, experiment_id, pack_size)
    for eid, reason in swept.stopped.items():
        log.info("sweep: experiment %s %s", eid, reason)
    return send(sessions, celery, swept.messages)


def reconcile_once(
    sessions: sessionmaker[Session],
    celery: Celery,
    *,
    stale_after_s: float = STALE_QUEUED_S,
    grace_s: float = GRACE_S,
    parts: PartFileSweeper | None = None,
    pack_size: int | None = 1,
) -> Report:
    report = Report()
    now = utcnow()
    with sessions.begin() as session:
        report.requeued = jobs.requeue_expired(session)
    with sessions.begin() as session:  # early stopping, launches within max_concurrent
        swept = sweeps.tick(session, pack_size)
    report.stopped = swept.stopped
    send(sessions, celery, swept.messages)
    with sessions.begin() as session:  # queues no live worker consumes: say so, send no more
        report.idle_queues = sorted(jobs.note_waiting(session, workers.consumers(session)))
    with sessions() as session:
        ids = jobs.stale_queued(
            session,
            now - timedelta(seconds=stale_after_s),
            now - timedelta(seconds=grace_s),
            idle_queues=report.idle_queues,
        )
        # a sweep's trials go out in packs again (a killed worker's pack: its members rerun
        # together), other runs one by one
        rows = session.scalars(select(Experiment).where(Experiment.id.in_(ids))).all()
        messages = packing.group(rows, pack_size)
    report.enqueued = send(sessions, celery, messages)
    if report.requeued or report.enqueued:
        log.info("reconciler: requeued %s, enqueued %s", report.requeued, report.enqueued)
    for experiment_id, reason in report.stopped.items():
        log.info("reconciler: experiment %s %s", experiment_id, reason)
    if parts is not None:
        report.removed_parts = parts.tick()
        if report.removed_parts:
            log.info("reconciler: removed leftover upload files %s", report.removed_parts)
    counters.reconciled(report.requeued, report.enqueued, report.stopped, report.removed_parts)
    return report


class Reconciler(threading.Thread):
    """``reconcile_once`` every ``interval_s`` seconds until ``stop()`` (keyword arguments go to
    it; one ``parts`` sweeper serves every tick, so its walk resumes where it stopped)."""

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
