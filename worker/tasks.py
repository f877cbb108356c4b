"""``experiments.run``: claim the row, run regcore with a DbReporter, record how it ended.

The task takes an id and re-reads everything from the database. A redelivered or duplicate
message is harmless: only one worker at a time can hold the row's lease (``jobs.claim``).

The worker process claims the row, keeps its lease (``LeaseKeeper``) and records the outcome;
the job itself (``execute_claimed``: data, training, evaluations, measurements, uploads) runs in
a child process of its own (``worker.child``, ``REGLAB_WORKER_ISOLATION=process``, the
default), so a job that runs out of memory or crashes ends alone and the worker goes on, and a
cancel is honoured within ``REGLAB_CANCEL_GRACE_SECONDS`` at any stage: the worker kills a child
that did not stop by itself. ``inline`` runs the job in the worker's own process (tests).
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from celery import Task
from celery.signals import worker_init, worker_ready, worker_shutting_down

from regcore.experiment import run as run_experiment
from regcore.spec import SpecError, parse_spec
from regcore.training.device import DeviceUnavailable
from service.db import jobs
from service.queue import TASK_NAME
from worker import provenance, run_logs
from worker.celery_app import app
from worker.context import WorkerContext, get_context
from worker.datasets import prepare_inputs
from worker.lease import LeaseKeeper
from worker.reporter import DbReporter, PackEpoch, retry_db

log = logging.getLogger(__name__)

#: Failures that a retry cannot fix: the row ends ``failed`` at once.
PERMANENT = (DeviceUnavailable, torch.cuda.OutOfMemoryError, MemoryError)

#: A volume that is full or read-only: the run fails with that reason (nothing half-written is
#: recorded: uploads land under a temporary name and are recorded only after they complete).
STORE_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)

#: Set when the worker is asked to stop (SIGTERM, Ctrl-C): the run stops at its next step and
#: goes back to the queue, to resume from its last checkpoint, instead of holding up shutdown.
SHUTTING_DOWN = threading.Event()


@worker_shutting_down.connect
def _on_shutdown(**_: Any) -> None:
    SHUTTING_DOWN.set()


@worker_init.connect
def _import_what_jobs_import(**_: Any) -> None:
    # inline jobs run in this process: torch imports torch._dynamo (sympy and all: 1-9 s) on a
    # job's first optimizer, which the first job should not pay for (measured: the first pack
    # of benchmarks/sweep.py took 4.4 s against 3.4 s for the second). Before "ready": a
    # worker takes no job before it is done. Isolated jobs' fork server preloads it instead.
    if not _isolated(get_context().settings):
        import torch._dynamo  # noqa: F401


@worker_ready.connect
def _warm_job_processes(**_: Any) -> None:
    # the first job should not pay for starting the process its jobs are forked from
    if _isolated(get_context().settings):
        from worker import child

        child.warm()


def _isolated(settings: Any) -> bool:
    """Whether jobs run in a child process (``REGLAB_WORKER_ISOLATION``)."""
    if settings.worker_isolation == "auto":
        return not settings.database_url.startswith("sqlite")
    return settings.worker_isolation == "process"


def out_of_memory(err: BaseException) -> bool:
    """MemoryError (numpy, Python), CUDA out of memory, or torch's CPU allocator refusing (a
    RuntimeError, e.g. under a ``prlimit --as`` / ``REGLAB_JOB_MEMORY_LIMIT_BYTES`` cap)."""
    if isinstance(err, MemoryError | torch.cuda.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and "can't allocate memory" in str(err)


class JobError(RuntimeError):
    """The job's process raised (or died) unexpectedly; ``str`` is what it said."""


class ExperimentTask(Task):
    """Records ``failed`` with the reason when the task raises unexpectedly (as saleor's
    ExportTask.on_failure), so a crash never leaves the row ``running`` until its lease expires."""

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        experiment_id = args[0] if args else kwargs.get("experiment_id")
        if not experiment_id:
            return
        ctx = get_context()
        said = str(exc) if isinstance(exc, JobError) else f"{type(exc).__name__}: {exc}"
        try:
            with ctx.sessions.begin() as session:
                jobs.finish(
                    session,
                    experiment_id,
                    ctx.worker_id,
                    "failed",
                    error=f"worker error: {said}",
                )
        except Exception:  # noqa: BLE001 - the lease expires and the reconciler takes over
            log.exception("could not record the failure of experiment %s", experiment_id)


@app.task(name=TASK_NAME, base=ExperimentTask, bind=True)
def run(self: Task, experiment_id: str) -> str:
    return run_job(experiment_id, get_context())


@dataclass(frozen=True)
class ClaimedJob:
    """What a claim hands the job (picklable: it crosses into the job's process)."""

    id: str
    worker_id: str
    attempt: int
    spec: Any
    resume_keys: tuple[str, str, str] | None


@dataclass
class Outcome:
    """How a job ended, for the worker to record: a terminal status with its summary and error,
    or the lease lost (another worker owns the row: record nothing)."""

    status: str
    summary: dict[str, Any] | None = None
    error: str | None = None
    cancel_seen: bool = True  # False: stopped because the worker is shutting down
    lease_lost: bool = False


def job_reporter(
    ctx: WorkerContext, job: ClaimedJob, stop: Any, pack_epoch: PackEpoch | None = None
) -> DbReporter:
    """The reporter of a claimed job (a single run, or one member of a pack) under its lease;
    ``stop``: the worker's shutdown, or in a job's process the worker's stop event;
    ``pack_epoch``: a pack member's, which holds its points for the pack's one write."""
    s = ctx.settings
    return DbReporter(
        ctx.sessions, ctx.store, job.id, job.worker_id,
        lease_s=s.lease_seconds, heartbeat_s=s.heartbeat_seconds, stop=stop,
        pack_epoch=pack_epoch,
    )  # fmt: skip


def job_lines(ctx: WorkerContext, job: ClaimedJob) -> run_logs.RunLog:
    """Keep this process's log lines of a claimed job (``worker.run_logs.start``)."""
    s = ctx.settings
    return run_logs.start(
        ctx.sessions, job.id, job.worker_id, job.attempt,
        max_lines=s.max_log_lines, budget_s=s.lease_seconds,
    )  # fmt: skip


def run_job(experiment_id: str, ctx: WorkerContext) -> str:
    """Run one experiment to its end (or to a lost lease); returns what happened, for the log."""
    settings = ctx.settings
    claimed = retry_db(lambda: _claim(ctx, experiment_id), settings.lease_seconds, "claiming")
    if isinstance(claimed, str):
        log.info("experiment %s not claimed (%s)", experiment_id, claimed)
        return f"skipped: {claimed}"
    spec_data, attempt, resume_keys = claimed
    job = ClaimedJob(experiment_id, ctx.worker_id, attempt, spec_data, resume_keys)
    lines = job_lines(ctx, job)
    log.info("experiment %s: attempt %d on %s", experiment_id, attempt, ctx.worker_id)
    if _isolated(settings):
        from worker.child import ChildRunner

        runner: ChildRunner | InlineRunner = ChildRunner(ctx, job, SHUTTING_DOWN)
    else:
        runner = InlineRunner(ctx, job, SHUTTING_DOWN)
    # From here to the outcome the row is ours: the keeper renews the lease through the work
    # between training steps too (data, checkpoint fetch and uploads, evaluations).
    keeper = LeaseKeeper(
        ctx.sessions,
        experiment_id,
        ctx.worker_id,
        lease_s=settings.lease_seconds,
        every_s=settings.heartbeat_seconds,
        on_lost=runner.lose,
        alive_file=settings.worker_heartbeat_file,
    )
    keeper.start()
    try:
        try:
            outcome = runner.run()
        finally:
            keeper.stop()  # the last write below ends the lease; a beat after it reads as lost
        return _settle(ctx, experiment_id, outcome)
    except Exception as err:
        log.error("experiment %s: worker error: %s: %s", experiment_id, type(err).__name__, err)
        raise
    finally:
        lines.close()


class InlineRunner:
    """The job in the worker's own process (``REGLAB_WORKER_ISOLATION=inline``)."""

    def __init__(self, ctx: WorkerContext, job: ClaimedJob, stop: threading.Event):
        self.ctx, self.job = ctx, job
        self.reporter = job_reporter(ctx, job, stop)

    def lose(self) -> None:
        self.reporter.lose("renewing the lease")

    def run(self) -> Outcome:
        return execute_claimed(self.ctx, self.job, self.reporter)


def execute_claimed(ctx: WorkerContext, job: ClaimedJob, reporter: DbReporter) -> Outcome:
    """The job: the spec, its inputs, the checkpoint to resume from, the regcore run. Runs in
    the job's process; writes only through the lease-guarded reporter and stores, and keeps
    the job's log lines (``worker.run_logs``; one capture when that is the worker's process)."""
    s = ctx.settings
    with run_logs.capture(
        ctx.sessions, job.id, job.worker_id, job.attempt,
        max_lines=s.max_log_lines, budget_s=s.lease_seconds,
    ):  # fmt: skip
        return _execute_claimed(ctx, job, reporter)


def _execute_claimed(ctx: WorkerContext, job: ClaimedJob, reporter: DbReporter) -> Outcome:
    settings = ctx.settings
    try:
        spec = parse_spec(job.spec)
    except SpecError as err:  # e.g. stored by an older version with a parameter since removed
        return Outcome("failed", error=f"the stored spec is not valid: {err}")
    provenance.record(ctx, job.id, job.worker_id, provenance.at_claim(spec, ctx, job.worker_id))
    refused = prepare_inputs(ctx, job.id, spec)  # uploads and references, by id
    if refused is not None:
        return Outcome("failed", error=refused)

    workdir = ctx.scratch / job.id
    _fetch_last_checkpoint(ctx, workdir / "checkpoints", job.resume_keys)
    if reporter.lease_lost:
        return Outcome("failed", lease_lost=True)
    try:
        result = run_experiment(
            spec,
            workdir=workdir,
            reporter=reporter,
            cache_dir=Path(settings.cache_dir),
            threads=ctx.threads,
            resume=True,
            system_metrics=True,
        )
    except Exception as err:
        failed = failure_outcome(err, reporter.lease_lost)
        if failed is None:
            raise
        return failed
    return outcome_of(ctx, job.id, result, reporter)


def failure_outcome(err: Exception, lease_lost: bool) -> Outcome | None:
    """How a run that raised ``err`` ends when a retry cannot help (a full or read-only volume,
    out of memory, no such device); None for an unexpected error (the caller re-raises)."""
    if isinstance(err, OSError) and err.errno in STORE_FULL:
        # a full or read-only volume (scratch or artifact store): say which, not the path
        return Outcome(
            "failed", error=f"a write was refused: {os.strerror(err.errno)} (errno {err.errno})",
            lease_lost=lease_lost,
        )  # fmt: skip
    if isinstance(err, OSError) or not (isinstance(err, PERMANENT) or out_of_memory(err)):
        return None
    what = "" if "Memory" in type(err).__name__ else "out of memory: "
    return Outcome("failed", error=f"{what}{type(err).__name__}: {err}", lease_lost=lease_lost)


def outcome_of(
    ctx: WorkerContext, experiment_id: str, result: Any, reporter: DbReporter
) -> Outcome:
    """The outcome of a regcore run (``RunResult``) that reported through ``reporter``."""
    if reporter.lease_lost:
        return Outcome(result.status, lease_lost=True)  # the new owner records the outcome
    if result.reason:
        log.info("experiment %s: %s", experiment_id, result.reason)
    summary = _clean(result.summary())
    if env := summary.pop("environment", None):  # stored beside the summary, not in it
        provenance.record(ctx, experiment_id, reporter.worker_id, env)
    error = result.reason if result.status == "failed" else None
    return Outcome(result.status, summary, error, cancel_seen=reporter.cancel_seen)


def _settle(ctx: WorkerContext, experiment_id: str, outcome: Outcome) -> str:
    """Record the outcome (the worker's process does this, whatever happened to the job's)."""
    if outcome.lease_lost:
        return "lease lost"
    if outcome.status == "cancelled" and not outcome.cancel_seen:  # stopped for shutdown

        def give_back() -> bool:
            with ctx.sessions.begin() as session:
                return jobs.release(session, experiment_id, ctx.worker_id)

        released = retry_db(give_back, ctx.settings.lease_seconds, "releasing the run")
        log.info("experiment %s back in the queue: the worker is shutting down", experiment_id)
        return "released" if released else "lease lost"
    result = _finish(ctx, experiment_id, outcome.status, outcome.summary, outcome.error)
    shutil.rmtree(ctx.scratch / experiment_id, ignore_errors=True)
    return result


def _claim(
    ctx: WorkerContext, experiment_id: str
) -> str | tuple[Any, int, tuple[str, str, str] | None]:
    """One transaction: claim the row (the spec, the attempt, the checkpoint to resume from),
    or settle a row that can never run and say why it was not claimed."""
    with ctx.sessions.begin() as session:
        row = jobs.claim(session, experiment_id, ctx.worker_id, ctx.settings.lease_seconds)
        if row is None:
            return jobs.settle_unclaimable(session, experiment_id) or "not runnable"
        last = jobs.latest_checkpoint(session, experiment_id, "last")
        resume_keys = None
        if last is not None and last.state_uri and last.sidecar_uri:
            resume_keys = (last.uri, last.state_uri, last.sidecar_uri)
        return row.spec, row.attempts, resume_keys


def _fetch_last_checkpoint(
    ctx: WorkerContext, ckpt_dir: Path, keys: tuple[str, str, str] | None
) -> None:
    """Put the recorded ``last`` checkpoint where regcore resumes from; the database, not the
    scratch folder, says which checkpoint is current. A pack member's (``worker.packs``: a
    trial that trained in a pack and now runs alone) is kept too: regcore's lone run goes on
    from it (``regcore.ensemble.lone_resume``), or starts over from epoch 0 when the member had
    ended; its epochs after the resumed one are written once (metrics are unique on
    experiment, key and step)."""
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    if keys is None:
        return
    names = ("last.safetensors", "last.state.safetensors", "last.json")
    for key, name in zip(keys, names, strict=True):
        ctx.store.get(key, ckpt_dir / name)


def _is_pack_member(sidecar: Path) -> bool:
    """Whether a checkpoint's sidecar is a pack member's (``regcore.ensemble.pack``: its
    training state names the pack); a sidecar that does not read is regcore's to refuse."""
    try:
        state = json.loads(sidecar.read_text()).get("train_state")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(state, dict) and "pack" in state


def _finish(
    ctx: WorkerContext,
    experiment_id: str,
    status: str,
    summary: dict[str, Any] | None = None,
    error: str | None = None,
) -> str:
    def write() -> bool:
        with ctx.sessions.begin() as session:
            return jobs.finish(session, experiment_id, ctx.worker_id, status, summary, error)

    if not retry_db(write, ctx.settings.lease_seconds, f"recording the outcome {status}"):
        return "lease lost"
    log.info("experiment %s %s%s", experiment_id, status, f": {error}" if error else "")
    return status


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities (a diverged run's metrics) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value
