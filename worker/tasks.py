"""``experiments.run``: claim the row, run regcore with a DbReporter, record how it ended.

The task takes an id and re-reads everything from the database. A redelivered or duplicate
message is harmless: only one worker at a time can hold the row's lease (``jobs.claim``).
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
from pathlib import Path
from typing import Any

import torch
from celery import Task
from celery.signals import worker_shutting_down

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
from worker.reporter import DbReporter, retry_db

log = logging.getLogger(__name__)

#: Failures that a retry cannot fix: the row ends ``failed`` at once.
PERMANENT = (DeviceUnavailable, torch.cuda.OutOfMemoryError)

#: Set when the worker is asked to stop (SIGTERM, Ctrl-C): the run stops at its next step and
#: goes back to the queue, to resume from its last checkpoint, instead of holding up shutdown.
SHUTTING_DOWN = threading.Event()


@worker_shutting_down.connect
def _on_shutdown(**_: Any) -> None:
    SHUTTING_DOWN.set()


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
        try:
            with ctx.sessions.begin() as session:
                jobs.finish(
                    session,
                    experiment_id,
                    ctx.worker_id,
                    "failed",
                    error=f"worker error: {type(exc).__name__}: {exc}",
                )
        except Exception:  # noqa: BLE001 - the lease expires and the reconciler takes over
            log.exception("could not record the failure of experiment %s", experiment_id)


@app.task(name=TASK_NAME, base=ExperimentTask, bind=True)
def run(self: Task, experiment_id: str) -> str:
    return run_job(experiment_id, get_context())


def run_job(experiment_id: str, ctx: WorkerContext) -> str:
    """Run one experiment to its end (or to a lost lease); returns what happened, for the log."""
    settings = ctx.settings
    claimed = retry_db(lambda: _claim(ctx, experiment_id), settings.lease_seconds, "claiming")
    if isinstance(claimed, str):
        log.info("experiment %s not claimed (%s)", experiment_id, claimed)
        return f"skipped: {claimed}"
    spec_data, attempt, resume_keys = claimed
    lines = run_logs.start(
        ctx.sessions, experiment_id, ctx.worker_id, attempt,
        max_lines=settings.max_log_lines, budget_s=settings.lease_seconds,
    )  # fmt: skip
    log.info("experiment %s: attempt %d on %s", experiment_id, attempt, ctx.worker_id)
    reporter = DbReporter(
        ctx.sessions,
        ctx.store,
        experiment_id,
        ctx.worker_id,
        lease_s=settings.lease_seconds,
        heartbeat_s=settings.heartbeat_seconds,
        stop=SHUTTING_DOWN,
    )
    # From here to the outcome the row is ours: the keeper renews the lease through the work
    # between training steps too (data, checkpoint fetch and uploads, evaluations).
    keeper = LeaseKeeper(
        ctx.sessions,
        experiment_id,
        ctx.worker_id,
        lease_s=settings.lease_seconds,
        every_s=settings.heartbeat_seconds,
        on_lost=lambda: reporter.lose("renewing the lease"),
        alive_file=settings.worker_heartbeat_file,
    )
    keeper.start()
    try:
        return _run_claimed(ctx, experiment_id, spec_data, resume_keys, reporter, keeper)
    except Exception as err:
        log.error("experiment %s: worker error: %s: %s", experiment_id, type(err).__name__, err)
        raise
    finally:
        keeper.stop()
        lines.close()


def _run_claimed(
    ctx: WorkerContext,
    experiment_id: str,
    spec_data: Any,
    resume_keys: tuple[str, str, str] | None,
    reporter: DbReporter,
    keeper: LeaseKeeper,
) -> str:
    settings = ctx.settings
    try:
        spec = parse_spec(spec_data)
    except SpecError as err:  # e.g. stored by an older version with a parameter since removed
        keeper.stop()
        return _finish(ctx, experiment_id, "failed", error=f"the stored spec is not valid: {err}")
    provenance.record(
        ctx, experiment_id, ctx.worker_id, provenance.at_claim(spec, ctx, ctx.worker_id)
    )
    refused = prepare_inputs(ctx, experiment_id, spec)  # uploads and references, by id
    if refused is not None:
        keeper.stop()
        return _finish(ctx, experiment_id, "failed", error=refused)

    workdir = ctx.scratch / experiment_id
    _fetch_last_checkpoint(ctx, workdir / "checkpoints", resume_keys)
    if reporter.lease_lost:
        return "lease lost"
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
    except PERMANENT as err:
        keeper.stop()
        if reporter.lease_lost:
            return "lease lost"
        return _finish(ctx, experiment_id, "failed", error=f"{type(err).__name__}: {err}")
    keeper.stop()  # the last write below ends the lease; a beat after it would read as lost
    if reporter.lease_lost:
        return "lease lost"  # the new owner records the outcome
    if result.status == "cancelled" and not reporter.cancel_seen:  # stopped for shutdown

        def give_back() -> bool:
            with ctx.sessions.begin() as session:
                return jobs.release(session, experiment_id, ctx.worker_id)

        released = retry_db(give_back, settings.lease_seconds, "releasing the run")
        log.info("experiment %s back in the queue: the worker is shutting down", experiment_id)
        return "released" if released else "lease lost"
    error = result.reason if result.status == "failed" else None
    if result.reason:
        log.info("experiment %s: %s", experiment_id, result.reason)
    summary = _clean(result.summary())
    if env := summary.pop("environment", None):  # stored beside the summary, not in it
        provenance.record(ctx, experiment_id, ctx.worker_id, env)
    outcome = _finish(ctx, experiment_id, result.status, summary, error)
    shutil.rmtree(workdir, ignore_errors=True)
    return outcome


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
    scratch folder, says which checkpoint is current."""
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    if keys is None:
        return
    names = ("last.safetensors", "last.state.safetensors", "last.json")
    for key, name in zip(keys, names, strict=True):
        ctx.store.get(key, ckpt_dir / name)


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
