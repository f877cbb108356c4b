"""``experiments.run_pack``: a pack of sweep trials trained as one job on regcore's batched engine.

The service sends a sweep's trials that share seed, data, model and epochs as one message
(``service.sweeps.packing``); regcore has the last word on what batches. The task:

1. reads the trials' specs and groups them by ``regcore.ensemble.pack.pack_key``; the first
   group of two or more is the pack run here, every other group is sent on as its own message
   (a pack, or a single ``experiments.run`` for a spec that cannot pack);
2. claims each member's row as a single run's claim does (``worker.tasks._claim``: the attempt
   counted, its own lease) and fetches its recorded ``last`` checkpoint; a member that cannot be
   claimed (cancelled, ended, or another worker's) is dropped from the pack; one with a lone
   run's checkpoint from an earlier attempt is given back and sent on alone, to resume from it;
3. runs ``run_pack`` with one ``DbReporter`` per member (its epochs, checkpoints, cancel and
   lease, exactly as a single run's) and one ``LeaseKeeper`` per member, resuming from the
   members' checkpoints when one of them has a pack member's;
4. settles each member on its own (``worker.tasks._settle``): a member cancelled, stopped by
   the sweep's early stopping (a cancel request with the trial's ``stop_reason``) or diverged
   ends alone while the others go on.

A pack runs in the worker's own process (not a child per job), and its log lines are kept on
every member. Each member's ``last`` checkpoint, written every ``PACK_CHECKPOINT_EVERY`` epochs
and uploaded as a single run's, holds its whole share of the pack's state (its weights, its
slice of the optimizer state, its schedule, generators, early stopping and status: see
``regcore.ensemble.pack``), so after a worker is killed, the members' leases expire, the
reconciler sends them again as a pack (``service.sweeps.packing``), and the worker that claims
them fetches each member's checkpoint and the pack goes on from their epoch (``resumed`` and
``start_epoch`` in each member's log: "resuming from epoch N"); each member's epochs after it
are written once, as a single run's after its resume. When the members' checkpoints do not fit
together (one without a checkpoint, e.g. a trial new to this pack, or members running at
different epochs) the pack starts over from epoch 0 and says why in the log; the epochs already
recorded stay, and the rerun's copies of them are not written twice (metrics are unique on
experiment, key and step). A member that ends up alone (``REGLAB_PACK_SIZE=1``) cannot resume
from a pack member's checkpoint (``worker.tasks._fetch_last_checkpoint`` drops it) and reruns
alone from epoch 0 the same way.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from celery import Task
from sqlalchemy import select

from regcore.ensemble.pack import PackMember, pack_key, run_pack, why_not_packed
from regcore.spec import ExperimentSpec, SpecError, parse_spec
from regcore.system_metrics import collecting
from regcore.training.device import resolve_device
from service.db import jobs
from service.db.models import Experiment
from service.queue import PACK_TASK_NAME
from worker import provenance, run_logs
from worker.celery_app import app
from worker.context import WorkerContext, get_context
from worker.datasets import prepare_inputs
from worker.lease import LeaseKeeper
from worker.reconciler import send
from worker.reporter import DbReporter, retry_db
from worker.tasks import (
    SHUTTING_DOWN,
    Outcome,
    _claim,
    _is_pack_member,
    _settle,
    failure_outcome,
    outcome_of,
)

log = logging.getLogger(__name__)

#: a ``last`` checkpoint's files, in ``worker.reporter.checkpoint_keys``' order
CHECKPOINT_FILES = ("last.safetensors", "last.state.safetensors", "last.json")

#: a pack writes its members' ``last`` checkpoints every this many epochs and at the end, not
#: every epoch as a single run does: a killed pack resumes from them, so it redoes at most this
#: many epochs. Saving the 16 members' checkpoints of the sweep benchmark's pack takes
#: 34-100 ms in process (no pack-wide checkpoint any more) against an epoch of 0.30 s, and each
#: member's upload is then three store writes and one database write: every epoch would cost
#: about as much as the epochs themselves (with the pack's own checkpoint, every epoch took a
#: 20-epoch pack from 12.6 s to 23.6 s in process, before any upload)
PACK_CHECKPOINT_EVERY = 5


@app.task(name=PACK_TASK_NAME, bind=True)
def run_pack_task(self: Task, experiment_ids: list[str]) -> str:
    return run_pack_job(list(experiment_ids), get_context())


def regroup(specs: Sequence[tuple[str, str, ExperimentSpec | None]]) -> list[tuple[list[str], str]]:
    """``(ids, queue)`` messages from ``(id, queue, spec)``, in order: the ids whose specs
    share a ``pack_key`` (and queue) together, split where regcore would refuse them as one
    pack (``why_not_packed``: e.g. members that list their regularizers in different orders);
    a spec that cannot pack (or was not valid) alone."""
    slots: dict[Any, list[list[str]]] = {}
    slot_specs: dict[Any, list[list[ExperimentSpec]]] = {}
    queues: dict[Any, str] = {}
    for i, (eid, queue, spec) in enumerate(specs):
        key = pack_key(spec) if spec is not None else None
        if spec is None or key is None:
            slots[i], queues[i] = [[eid]], queue
            continue
        slot = (queue, key)
        queues[slot] = queue
        groups, group_specs = slots.setdefault(slot, []), slot_specs.setdefault(slot, [])
        for ids, members in zip(groups, group_specs, strict=True):
            if why_not_packed([*members, spec]) is None:
                ids.append(eid)
                members.append(spec)
                break
        else:
            groups.append([eid])
            group_specs.append([spec])
    return [(ids, queues[slot]) for slot, groups in slots.items() for ids in groups]


def _read(ctx: WorkerContext, ids: list[str]) -> list[tuple[str, str, ExperimentSpec | None]]:
    """The runnable rows among ``ids`` (queued, or running: maybe a lease to take over), in
    the message's order, with their specs (None: not valid, the single path fails it)."""
    with ctx.sessions() as session:
        rows = {
            eid: (queue, spec)
            for eid, queue, spec in session.execute(
                select(Experiment.id, Experiment.queue, Experiment.spec).where(
                    Experiment.id.in_(ids), Experiment.status.in_(("queued", "running"))
                )
            )
        }
    out: list[tuple[str, str, ExperimentSpec | None]] = []
    for eid in ids:
        if eid not in rows:
            continue
        queue, data = rows[eid]
        try:
            spec: ExperimentSpec | None = parse_spec(data)
        except SpecError:
            spec = None
        out.append((eid, queue, spec))
    return out


class _Member:
    """One claimed member: its reporter, lease keeper and log lines."""

    def __init__(
        self, ctx: WorkerContext, eid: str, attempt: int, spec: ExperimentSpec, resume: bool
    ):
        s = ctx.settings
        self.id, self.spec, self.resume = eid, spec, resume
        self.workdir = ctx.scratch / eid
        self.reporter = DbReporter(
            ctx.sessions, ctx.store, eid, ctx.worker_id,
            lease_s=s.lease_seconds, heartbeat_s=s.heartbeat_seconds, stop=SHUTTING_DOWN,
        )  # fmt: skip
        self.keeper = LeaseKeeper(
            ctx.sessions, eid, ctx.worker_id,
            lease_s=s.lease_seconds, every_s=s.heartbeat_seconds,
            on_lost=lambda: self.reporter.lose("renewing the lease"),
            alive_file=s.worker_heartbeat_file,
        )  # fmt: skip
        self.lines = run_logs.start(
            ctx.sessions, eid, ctx.worker_id, attempt,
            max_lines=s.max_log_lines, budget_s=s.lease_seconds,
        )  # fmt: skip


def run_pack_job(experiment_ids: list[str], ctx: WorkerContext) -> str:
    """Run the pack among ``experiment_ids`` (send the rest on); returns what happened."""
    messages = regroup(_read(ctx, experiment_ids))
    here = next((m for m in messages if len(m[0]) > 1), None)
    others = [m for m in messages if m is not here]
    if others:
        log.info("pack: sending on %s (not packed with the rest)", [m[0] for m in others])
        send(ctx.sessions, app, others)
    if here is None:
        return "nothing to pack"
    ids, queue = here
    members: list[_Member] = []
    alone: list[tuple[str | list[str], str]] = []
    for eid in ids:
        claimed = retry_db(partial(_claim, ctx, eid), ctx.settings.lease_seconds, "claiming")
        if isinstance(claimed, str):
            log.info("experiment %s not claimed for the pack (%s)", eid, claimed)
            continue
        data, attempt, resume_keys = claimed
        # an earlier attempt's checkpoint: a lone run's resumes alone; a pack member's resumes
        # this pack (with the others', run_pack's to judge)
        try:
            kind = _fetch_checkpoint(ctx, ctx.scratch / eid / "checkpoints", resume_keys)
        except Exception:  # noqa: BLE001 - the single path meets the same error and says so
            log.warning("experiment %s: its checkpoint could not be fetched", eid, exc_info=True)
            kind = "lone"
        if kind == "lone":

            def give_back(eid: str = eid) -> bool:
                with ctx.sessions.begin() as session:
                    return jobs.release(session, eid, ctx.worker_id)

            if retry_db(give_back, ctx.settings.lease_seconds, "releasing the run"):
                alone.append((eid, queue))
            continue
        members.append(_Member(ctx, eid, attempt, parse_spec(data), resume=kind == "pack"))
    if alone:
        send(ctx.sessions, app, alone)
    if not members:
        return "no member claimed"
    try:
        return _run(ctx, members)
    finally:
        for m in members:
            m.keeper.stop()
            m.lines.close()


def _fetch_checkpoint(ctx: WorkerContext, ckpt_dir: Path, keys: tuple[str, str, str] | None) -> str:
    """Put a member's recorded ``last`` checkpoint in ``ckpt_dir`` (emptied first: the
    database says which checkpoint is current, not the scratch folder); says whose it is:
    ``"pack"`` (a pack member's, to resume the pack from), ``"lone"`` (a lone run's) or
    ``"none"``. ``worker.tasks._fetch_last_checkpoint`` without its dropping a pack member's."""
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    if keys is None:
        return "none"
    for key, name in zip(keys, CHECKPOINT_FILES, strict=True):
        ctx.store.get(key, ckpt_dir / name)
    return "pack" if _is_pack_member(ckpt_dir / "last.json") else "lone"


def _run(ctx: WorkerContext, members: list[_Member]) -> str:
    for m in members:
        m.keeper.start()
    ready: list[_Member] = []
    said: list[str] = []
    for m in members:
        provenance.record(ctx, m.id, ctx.worker_id, provenance.at_claim(m.spec, ctx, ctx.worker_id))
        refused = prepare_inputs(ctx, m.id, m.spec)  # uploads and references, by id
        if refused is not None:
            m.keeper.stop()
            said.append(_settle(ctx, m.id, Outcome("failed", error=refused)))
            continue
        ready.append(m)
    if not ready:
        return ", ".join(said)
    pack_dir = ctx.scratch / f"pack-{ready[0].id}"
    log.info("pack of %d on %s: %s", len(ready), ctx.worker_id, [m.id for m in ready])
    try:
        # the sys_* series as a single run has them (each member's: the pack's process)
        with collecting(resolve_device(ready[0].spec.train.device)):
            results = run_pack(
                [PackMember(m.spec, m.workdir, m.reporter) for m in ready],
                pack_dir,
                cache_dir=Path(ctx.settings.cache_dir),
                threads=ctx.threads,
                checkpoint_every=PACK_CHECKPOINT_EVERY,
                resume=any(m.resume for m in ready),  # else there is nothing to resume
            )
        outcomes = [
            outcome_of(ctx, m.id, r, m.reporter) for m, r in zip(ready, results, strict=True)
        ]
    except Exception as err:
        failed = failure_outcome(err, lease_lost=False)
        if failed is None:
            log.exception("pack of %s: worker error", [m.id for m in ready])
            failed = Outcome("failed", error=f"worker error: {type(err).__name__}: {err}")
        outcomes = [replace(failed, lease_lost=m.reporter.lease_lost) for m in ready]
    finally:
        shutil.rmtree(pack_dir, ignore_errors=True)
    for m, outcome in zip(ready, outcomes, strict=True):
        m.keeper.stop()  # the last write below ends the lease
        said.append(_settle(ctx, m.id, outcome))
    return ", ".join(said)
