"""DbReporter: regcore's Reporter that persists a run through the database and artifact store.

Each call is one short transaction; none is held across training. Every write is guarded by the
lease (``service.db.jobs``): when the lease is lost (this worker was paused past it and another
took over) the reporter asks the loop to stop and the task leaves the row alone. While the
database is unreachable, read-only or full each transaction is retried (``retry_db``) for up to the
lease, so an outage shorter than that only pauses the run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from regcore.training.checkpoint import CheckpointInfo
from service.db import jobs
from service.db.outage import describe, unreachable
from worker.artifacts import ArtifactStore

log = logging.getLogger(__name__)


def checkpoint_keys(experiment_id: str, kind: str, epoch: int) -> tuple[str, str, str]:
    """Keys of a checkpoint's weights, training state and sidecar; the epoch is in the name so a
    newer checkpoint never overwrites the file an older row points at."""
    base = f"{experiment_id}/checkpoints/{kind}-{epoch:04d}"
    return f"{base}.safetensors", f"{base}.state.safetensors", f"{base}.json"


T = TypeVar("T")


def retry_db(
    transaction: Callable[[], T],
    budget_s: float,
    what: str,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run a short transaction, running it again with backoff while the database is
    unreachable, read-only or full (``service.db.outage``), for up to ``budget_s`` (the lease: past
    it another worker may own the row, and the lease guard in every write settles who). Each
    transaction here is idempotent, so one whose commit was cut off can be repeated. Other
    errors, and an outage longer than the budget, are raised."""
    deadline: float | None = None
    delay = 0.25
    while True:
        try:
            return transaction()
        except DBAPIError as exc:
            now = clock()
            if not unreachable(exc):
                raise
            if deadline is None:
                deadline = now + budget_s
                log.warning(
                    "database %s while %s; retrying for %.0f s", describe(exc), what, budget_s
                )
            if now >= deadline:
                raise
            sleep(min(delay, deadline - now))
            delay = min(delay * 2, 2.0)


def write_epochs(
    sessions: sessionmaker[Session],
    worker_id: str,
    epochs: Sequence[jobs.EpochPoints],
    lease_s: float,
) -> set[str]:
    """Many experiments' epoch metrics (a pack's members) in one transaction, retried while the
    database is unreachable; returns the experiments whose lease is still ours (the others'
    points were not written: they must stop)."""

    def write() -> set[str]:
        with sessions.begin() as session:
            return jobs.record_epochs(session, worker_id, epochs, lease_s)

    steps = sorted({e.step for e in epochs})
    return retry_db(write, lease_s, f"recording epoch {', '.join(map(str, steps))}")


class PackEpoch:
    """A pack's epoch written once: its members' ``DbReporter``s hold their points here
    (``on_epoch``), and ``flush`` (regcore's ``run_pack(epoch_reported=...)``, after every
    member's ``on_epoch`` and before any checkpoint of the epoch) writes them all in one
    transaction (``write_epochs``: per step one renewal of every lease and one write of the
    points). A member whose lease turned out lost has its points dropped and stops, as a lone
    reporter's would."""

    def __init__(self, sessions: sessionmaker[Session], worker_id: str, lease_s: float):
        self.sessions, self.worker_id, self.lease_s = sessions, worker_id, lease_s
        self.held: list[tuple[DbReporter, jobs.EpochPoints]] = []

    def hold(self, reporter: DbReporter, epoch: int, metrics: dict[str, float]) -> None:
        self.held.append((reporter, jobs.EpochPoints(reporter.id, epoch, dict(metrics))))

    def flush(self, epoch: int | None = None) -> None:
        held, self.held = self.held, []
        if not held:
            return
        owned = write_epochs(self.sessions, self.worker_id, [p for _, p in held], self.lease_s)
        for reporter, points in held:
            reporter.written(points.step, points.experiment_id in owned)


class LeaseLost(RuntimeError):
    """Another worker owns the experiment now; this one must stop without writing."""


class DbReporter:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: ArtifactStore,
        experiment_id: str,
        worker_id: str,
        *,
        lease_s: float,
        heartbeat_s: float,
        poll_s: float = 1.0,
        clock: Any = time.monotonic,
        stop: threading.Event | None = None,
        pack_epoch: PackEpoch | None = None,
    ):
        """``pack_epoch``: a pack member's reporter holds its points there, for the pack's
        one write of the epoch."""
        self.sessions = sessions
        self.store = store
        self.id = experiment_id
        self.worker_id = worker_id
        self.lease_s = lease_s
        self.heartbeat_s = heartbeat_s
        self.poll_s = poll_s
        self.clock = clock
        self.stop = stop or threading.Event()
        self.lease_lost = False
        self.cancel_seen = False
        now = clock()
        self._last_poll = now
        self._last_beat = now  # claim() just set the lease
        self.start_info: dict[str, Any] = {}
        self.pack_epoch = pack_epoch

    def on_start(self, info: dict[str, Any]) -> None:
        self.start_info = info
        if info.get("resumed"):
            log.info("experiment %s: resuming from epoch %d", self.id, info["start_epoch"])
        self._beat()

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        if self.lease_lost:
            return
        if self.pack_epoch is not None:
            self.pack_epoch.hold(self, epoch, metrics)
            return
        points = [jobs.EpochPoints(self.id, epoch, metrics)]
        self.written(
            epoch, self.id in write_epochs(self.sessions, self.worker_id, points, self.lease_s)
        )

    def written(self, epoch: int, ok: bool) -> None:
        """The epoch's points were stored (the write renewed the lease), or the lease is lost."""
        if ok:
            self._last_beat = self.clock()
        else:
            self.lose(f"recording epoch {epoch}")

    def on_checkpoint(self, info: CheckpointInfo) -> None:
        if self.lease_lost:
            return
        keys = checkpoint_keys(self.id, info.kind, info.epoch)
        for path, key in zip((info.weights, info.state, info.sidecar), keys, strict=True):
            self.store.put(path, key)

        def write() -> list[str] | None:
            with self.sessions.begin() as session:
                return jobs.record_checkpoint(
                    session,
                    self.id,
                    self.worker_id,
                    kind=info.kind,
                    epoch=info.epoch,
                    uri=keys[0],
                    state_uri=keys[1],
                    sidecar_uri=keys[2],
                    size=info.size,
                    sha256=info.sha256,
                )

        stale = retry_db(write, self.lease_s, f"recording checkpoint {info.kind}-{info.epoch}")
        if stale is None:
            self.lose(f"recording checkpoint {info.kind} of epoch {info.epoch}")
            return
        for key in stale:  # after commit: no row points at them any more
            try:
                self.store.delete(key)
            except Exception:  # noqa: BLE001 - an orphan file is harmless
                log.warning("could not delete superseded artifact %s", key, exc_info=True)

    def should_cancel(self) -> bool:
        """Called between steps: reads the database at most every ``poll_s`` seconds and renews
        the lease when a heartbeat is due; True on a cancel request, a lost lease, or when the
        worker is shutting down (``stop``)."""
        if self.lease_lost or self.cancel_seen or self.stop.is_set():
            return True
        now = self.clock()
        if now - self._last_poll < self.poll_s:
            return False
        self._last_poll = now
        if now - self._last_beat >= self.heartbeat_s and not self._beat():
            return True

        def read() -> jobs.Control:
            with self.sessions() as session:
                return jobs.poll(session, self.id, self.worker_id)

        control = retry_db(read, self.lease_s, "polling for a cancel")
        if not control.owned:
            self.lose("polling")
            return True
        self.cancel_seen = control.cancel_requested
        return self.cancel_seen

    def _beat(self) -> bool:
        def write() -> bool:
            with self.sessions.begin() as session:
                return jobs.heartbeat(session, self.id, self.worker_id, self.lease_s)

        ok = retry_db(write, self.lease_s, "renewing the lease")
        if ok:
            self._last_beat = self.clock()
        else:
            self.lose("renewing the lease")
        return ok

    def lose(self, when: str) -> None:
        """Mark the lease lost (also called from the lease keeper's thread): the loop stops at
        its next check and nothing more is written."""
        if not self.lease_lost:
            log.warning("experiment %s: lease lost while %s; stopping", self.id, when)
        self.lease_lost = True
