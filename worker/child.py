"""Each job in a child process of the worker, so that nothing a job does can touch the next.

The worker's process claims the row, keeps its lease and records the outcome; the child runs
``worker.tasks.execute_claimed`` (data, training, evaluation, measurements, uploads) under the
worker's id and hands back an ``Outcome`` through a pipe. Then:

* a job that runs out of memory fails alone: a ``MemoryError`` (or torch's allocator refusing,
  or CUDA out of memory) in the child is its outcome; a child killed by the kernel's OOM killer
  (SIGKILL: children ask to be its first choice, ``oom_score_adj`` 1000) is recorded ``failed``
  with that reason, not retried, and the worker takes the next job;
* a cancel is honoured at any stage within ``REGLAB_CANCEL_GRACE_SECONDS`` of the worker seeing
  it (it polls every second): the child stops by itself at its next step, or is killed. A lost
  lease and the worker's shutdown stop it the same way (a shutdown puts the run back in the
  queue), so the worker never renews a lease for a job that cannot stop;
* a child whose worker died (SIGKILL, the OOM killer choosing the worker) exits at once: it
  watches its end of the pipe.

A pack of sweep trials (``worker.packs``) runs the same way, as one child for all its members:
the worker keeps each member's lease and polls each member's row; a member cancelled (or
stopped by the sweep's early stopping) is cancelled inside the pack by its own reporter, and the
child is stopped (then killed after the grace) only when every member must stop: all of them
cancelled, every lease lost, or the worker's shutdown. The child sends the ``Outcome`` of each
member that ends while the pack goes on (cancelled, stopped, diverged) as it ends (a
``("member", (id, outcome))`` message), which the worker settles at once, and then hands back
one ``Outcome`` per member; a pack's child killed by the OOM killer fails every member not yet
settled with that reason.

Children are forked from a *fork server* (``multiprocessing``'s forkserver) that imported torch
and regcore once, at the worker's start: a fork per job, never the worker's own threads or
connections, and no second import of torch (see docs/reliability.md for the measured cost).
Where there is no fork server (not Linux/macOS) they are spawned.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import os
import resource
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

from sqlalchemy.orm import configure_mappers

from regcore import memory_estimate
from regcore.spec import SpecError, parse_spec
from service.db import jobs, models  # noqa: F401 - the mappers configured below
from service.settings import Settings
from worker.context import WorkerContext, make_context

log = logging.getLogger(__name__)

#: how often the worker reads the row for a cancel (and a lost lease) while its job runs
POLL_S = 1.0
#: the format of the worker's log lines (reglab worker), in the child too
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: a child exits with this when its worker is gone
ORPHANED = 70


def _context() -> Any:
    if "forkserver" in multiprocessing.get_all_start_methods():
        mp = multiprocessing.get_context("forkserver")
        # torch._dynamo: torch imports it on a run's first optimizer (3-9 s, sympy and all)
        mp.set_forkserver_preload(
            [
                "worker.forkserver_signals",
                "worker.child",
                "worker.tasks",
                "worker.packs",
                "torch._dynamo",
            ]
        )
        return mp
    return multiprocessing.get_context("spawn")


MP = _context()
# What every child would otherwise do again on its first query (~2 s): the fork server imports
# this module, so its children start with the ORM's mappers configured.
configure_mappers()


def warm() -> None:
    """Start the fork server now and wait until it serves (it imports torch and regcore: seconds
    to tens of seconds on a busy machine), not on the first job: while a job's process is being
    started the worker cannot watch for its cancel."""
    with _main_hidden():
        _ensure_fork_server()
        proc = MP.Process(target=_nothing, name="reglab-warm")
        proc.start()
    proc.join(300)


def _ensure_fork_server() -> None:
    """Start the fork server (if it is not running). It ignores SIGTERM
    (``worker.forkserver_signals``, its first preload): a SIGTERM to the worker's process group
    (``kill -TERM -pgid``, systemd's default stop) would otherwise end it, and the worker would
    read every running job's exit status as 255 (the fork server reports its children's). It
    still ends with the worker (it watches a pipe), and the job processes it forks ignore
    SIGTERM too (``child_main``)."""
    if MP.get_start_method() != "forkserver":
        return
    from multiprocessing import forkserver

    forkserver.ensure_running()


def _nothing() -> None:
    """The warm-up child."""


class ChildRunner:
    """Runs one claimed job in a child process and watches it from the worker's: a single run
    (``worker.tasks.ClaimedJob``, its ``Outcome`` back) or a pack (``worker.packs.ClaimedPack``,
    whose ``members`` are claimed jobs: one ``Outcome`` per member back, in order)."""

    def __init__(
        self,
        ctx: WorkerContext,
        job: Any,
        shutting_down: threading.Event,
        on_member: Callable[[str, Any], None] | None = None,
    ):
        """``on_member(experiment id, outcome)``: a pack's member that ended while the pack
        goes on, as the child sends it (``worker.packs.PackRun``), called from ``run``."""
        self.ctx = ctx
        self.job = job
        self.shutting_down = shutting_down
        self.grace_s = ctx.settings.cancel_grace_seconds
        self.pack = getattr(job, "members", None) is not None
        self.ids: list[str] = [m.id for m in job.members] if self.pack else [job.id]
        self.lost = threading.Event()  # every member's lease is lost
        self.lost_ids: set[str] = set()
        self.cancel_ids: set[str] = set()  # members whose row asks for a cancel
        self.ended_ids: set[str] = set()  # a pack's members that ended while it went on
        self.on_member = on_member
        self.started_ms: float | None = None
        self.pid: int | None = None

    def lose(self, experiment_id: str | None = None) -> None:
        """A lease keeper found another owner (of ``experiment_id``, a pack's member; the job's
        by default): once every member's is lost the child is stopped (it finds out too)."""
        self.lost_ids.add(experiment_id or self.job.id)
        if (self.lost_ids | self.ended_ids).issuperset(self.ids):
            self.lost.set()

    def _what(self) -> str:
        if self.pack:
            return f"pack of {len(self.ids)} ({', '.join(self.ids)})"
        return f"experiment {self.job.id}"

    def run(self) -> Any:
        here, there = MP.Pipe()
        stop = MP.Event()
        level = logging.getLogger().getEffectiveLevel()
        kind = "pack" if self.pack else "job"
        proc = MP.Process(
            target=child_main,
            args=(there, stop, self.ctx.settings, self.job, level),
            name=f"reglab-{kind}-{self.job.id[:8]}",
        )
        t0 = time.perf_counter()
        with _main_hidden():
            _ensure_fork_server()
            proc.start()
        there.close()
        self.started_ms = (time.perf_counter() - t0) * 1000
        self.pid = proc.pid
        log.info(
            "%s: %s process %s started in %.0f ms",
            self._what(), kind, proc.pid, self.started_ms,
        )  # fmt: skip
        try:
            return self._watch(proc, here, stop)
        finally:
            here.close()  # a child still running sees end-of-file and exits
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(10)

    def _watch(self, proc: Any, here: Connection, stop: Any) -> Any:
        why: str | None = None
        deadline = 0.0
        next_poll = time.monotonic() + POLL_S
        while True:
            if here.poll(0.1):
                try:
                    kind, payload = here.recv()
                except EOFError:
                    return self._died(proc, why)
                if kind == "error":
                    raise _job_error(payload)
                if kind == "member":  # a pack's member ended, the others go on
                    eid, outcome = payload
                    self._member_ended(eid, outcome, why)
                    continue
                return self._each(payload, functools.partial(self._received, why=why))
            if not proc.is_alive() and not here.poll(0):
                return self._died(proc, why)
            now = time.monotonic()
            if why is None:
                if now >= next_poll:
                    next_poll = now + POLL_S
                    why = self._why_stop()
                else:
                    why = self._why_stop(read_row=False)
                if why is not None:
                    said = "lease lost while its job ran" if why == "lost lease" else why
                    log.info(
                        "%s: stopping its job (%s); killed in %.0f s unless it stops",
                        self._what(), said, self.grace_s,
                    )  # fmt: skip
                    stop.set()  # the child's reporters stop at their next step
                    deadline = now + self.grace_s
            elif now >= deadline:
                proc.kill()
                proc.join(10)
                log.warning(
                    "%s: its job did not stop within %.0f s of the %s; killed it",
                    self._what(), self.grace_s, why,
                )  # fmt: skip
                return self._each(None, functools.partial(self._stopped_member, why=why))

    def _member_ended(self, eid: str, outcome: Any, why: str | None) -> None:
        self.ended_ids.add(eid)  # its row is no longer polled: the worker settles it now
        if self.on_member is not None:
            self.on_member(eid, self._received(eid, outcome, why))

    def _each(self, payload: Any, fix: Any) -> Any:
        """``fix(experiment id, outcome)`` of each member: a single job's ``Outcome``, a
        pack's list of them."""
        if not self.pack:
            return fix(self.job.id, payload)
        outcomes = payload if payload is not None else [None] * len(self.ids)
        return [fix(eid, o) for eid, o in zip(self.ids, outcomes, strict=True)]

    def _received(self, eid: str, outcome: Any, why: str | None) -> Any:
        if eid in self.lost_ids or why == "lost lease":
            # whatever the child made of its stop: the new owner records the outcome
            return _stopped("lost lease")
        if why == "cancel" and outcome.status == "cancelled" and eid in self.cancel_ids:
            # stopped by our stop event before its own poll read the cancel: the child cannot
            # tell that from a shutdown, we can (else the run was released, its attempt
            # uncounted, as if the worker were stopping)
            outcome.cancel_seen = True
        return outcome

    def _stopped_member(self, eid: str, _: Any, why: str) -> Any:
        return _stopped("lost lease" if eid in self.lost_ids else why)

    def _why_stop(self, read_row: bool = True) -> str | None:
        if self.lost.is_set():
            return "lost lease"
        if self.shutting_down.is_set():
            return "shutdown"
        if not read_row:
            return None
        try:
            with self.ctx.sessions() as session:
                for eid in self.ids:
                    if eid in self.lost_ids or eid in self.cancel_ids or eid in self.ended_ids:
                        continue  # none goes back
                    control = jobs.poll(session, eid, self.job.worker_id)
                    if not control.owned:
                        self.lose(eid)
                    elif control.cancel_requested:
                        self.cancel_ids.add(eid)
        except Exception:  # noqa: BLE001 - the database is away: the child's retries decide
            log.debug("%s: could not poll for a cancel", self._what(), exc_info=True)
            return None
        if self.lost.is_set():
            return "lost lease"
        live = [eid for eid in self.ids if eid not in self.lost_ids and eid not in self.ended_ids]
        # a pack's member alone is cancelled inside the pack, by its reporter
        return "cancel" if live and all(eid in self.cancel_ids for eid in live) else None

    def _died(self, proc: Any, why: str | None) -> Any:
        """The child ended without an outcome."""
        proc.join(10)
        code = proc.exitcode
        if why is None and self.shutting_down.is_set():  # the worker's stop came first
            why = "shutdown"
        if why is not None:  # it was being stopped and died doing so
            return self._each(None, functools.partial(self._stopped_member, why=why))
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            oom = (
                " (most likely the kernel's out-of-memory killer)"
                if -code == signal.SIGKILL
                else ""
            )
            from worker.tasks import Outcome

            what = "the job's process"
            if self.pack:
                what = f"the pack's process ({len(self.ids)} members)"
            error = f"{what} was killed by {name}{oom}{_estimate_note(self.job)}"
            return self._each(
                None,
                lambda i, _: _stopped("lost lease") if i in self.lost_ids
                else Outcome("failed", error=error),
            )  # fmt: skip
        raise _job_error(f"the job's process exited with code {code} without an outcome")


@contextlib.contextmanager
def _main_hidden() -> Iterator[None]:
    """Start a child without it re-importing the worker's main module (``reglab.cli``, a
    script): multiprocessing does that in every child so that objects of ``__main__`` unpickle,
    and nothing of ``__main__`` crosses here. It cost ~2 s a job: the worker's CLI and what it
    imports. (Python 3.11's fork server would preload it, but never receives its path.)"""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _stopped(why: str) -> Any:
    from worker.tasks import Outcome

    if why == "lost lease":
        return Outcome("failed", lease_lost=True)
    if why == "shutdown":
        return Outcome("cancelled", cancel_seen=False)
    return Outcome("cancelled")


def _job_error(said: str) -> Exception:
    from worker.tasks import JobError

    return JobError(said)


def _estimate_note(job: Any) -> str:
    members = getattr(job, "members", None)
    if members is not None:  # a pack: service.sweeps.packing's estimate of it
        from service.sweeps.packing import pack_estimate

        total = pack_estimate([m.spec for m in members])
        if total is None:
            return ""
        return f"; the pack was estimated at {memory_estimate.human(total)}"
    try:
        total = memory_estimate.estimate(parse_spec(job.spec)).total
    except (SpecError, ValueError, LookupError, TypeError):
        return ""
    return f"; its spec was estimated at {memory_estimate.human(total)}"


# --- in the child -----------------------------------------------------------------------------


def child_main(conn: Connection, stop: Any, settings: Settings, job: Any, level: int) -> None:
    from worker.tasks import execute_claimed, job_lines, job_reporter, out_of_memory

    # the worker decides when its job stops: a signal to the process group (Ctrl-C, SIGTERM of
    # a supervisor) reaches the worker, which stops the child through ``stop``
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _first_for_the_oom_killer()
    _exit_with_worker(conn)
    logging.basicConfig(level=level, format=LOG_FORMAT, force=True)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    _cap_memory(settings.job_memory_limit_bytes, job.spec)
    ctx = make_context(settings, worker_id=job.worker_id)
    pack = getattr(job, "members", None) is not None
    lines = [job_lines(ctx, m) for m in (job.members if pack else [job])]
    try:
        if pack:  # one outcome per member; each that ends while the pack goes on, as it ends
            from worker.packs import execute_pack

            def member_ended(eid: str, outcome: Any) -> None:
                conn.send(("member", (eid, outcome)))

            message: tuple[str, Any] = ("outcome", execute_pack(ctx, job, stop, member_ended))
        else:
            message = ("outcome", execute_claimed(ctx, job, job_reporter(ctx, job, stop)))
    except BaseException as err:  # noqa: BLE001 - the worker records it
        if out_of_memory(err):
            log.error("experiment %s: out of memory: %s", job.id, err)
        else:
            log.exception("experiment %s: the job raised", job.id)
        message = ("error", f"{type(err).__name__}: {err}")
    finally:
        for run_log in lines:
            run_log.close()
    conn.send(message)
    ctx.engine.dispose()


def _first_for_the_oom_killer() -> None:
    """When memory runs out the kernel kills the process with the highest score: this job,
    never its worker (raising one's own score needs no privilege)."""
    with contextlib.suppress(OSError):
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")


def _exit_with_worker(conn: Connection) -> None:
    """The worker never sends: end-of-file on the pipe means it is gone (killed), and the job
    must not run on unsupervised (its lease will pass to another worker)."""

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            while True:
                conn.recv()
        os._exit(ORPHANED)

    threading.Thread(target=watch, name="worker-watch", daemon=True).start()


def _cap_memory(limit: int | None, spec_data: Any) -> None:
    if limit is None:
        return
    train = spec_data.get("train") if isinstance(spec_data, dict) else None
    if str((train or {}).get("device", "auto")).startswith("cuda"):
        return
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
