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
   members' checkpoints when one of them has a pack member's; the reporters hold each epoch's
   points (``worker.reporter.PackEpoch``) and the whole pack's epoch is written in one
   transaction once every member has reported it, before any checkpoint of that epoch;
4. settles each member on its own (``worker.tasks._settle``): a member cancelled, stopped by
   the sweep's early stopping (a cancel request with the trial's ``stop_reason``) or diverged
   ends alone while the others go on.

A pack runs in a child process of the worker as a single run does (``worker.child``, with
``REGLAB_WORKER_ISOLATION`` as ``worker.tasks._isolated`` reads it; inline, in the worker's
own process): the worker claims the members, fetches their checkpoints, keeps their leases and
polls their rows, and settles each member from the ``Outcome`` the child sends back for it
(``execute_pack``: provenance, inputs, ``run_pack``, outcomes). So a pack that runs out of
memory (a ``MemoryError`` in the child, or the child killed by the kernel's OOM killer) fails
its members with that reason, not retried, and the worker takes the next job; a member's cancel
is its own (its reporter in the child reads it), and the child is stopped, and killed after
``REGLAB_CANCEL_GRACE_SECONDS``, only when every member must stop (all cancelled, every lease
lost, the worker's shutdown). A pack's memory is its members' summed estimate
(``service.sweeps.packing.pack_estimate``): ``regroup`` splits a message whose pack would
exceed ``REGLAB_WORKER_MEMORY_BYTES``, as the service's grouping does. Its log lines are kept
on every member. Each member's ``last`` checkpoint, written every ``PACK_CHECKPOINT_EVERY`` epochs
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
experiment, key and step). A member that ends up alone (``REGLAB_PACK_SIZE=1``) resumes alone
from its pack member's checkpoint (``regcore.ensemble.lone_resume``), as from a lone run's.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from celery import Task
from sqlalchemy import select

from regcore.ensemble.pack import PackMember, pack_key, run_pack, why_not_packed
from regcore.spec import ExperimentSpec, SpecError, parse_spec
from regcore.system_metrics import collecting
from regcore.training.device import resolve_device
from regcore.training.result import RunResult
from service.db import jobs
from service.db.models import Experiment
from service.queue import PACK_TASK_NAME
from service.sweeps.packing import fits
from worker import provenance, run_logs
from worker.celery_app import app
from worker.context import WorkerContext, get_context
from worker.datasets import prepare_inputs
from worker.lease import LeaseKeeper
from worker.reconciler import send
from worker.reporter import PackEpoch, retry_db
from worker.tasks import (
    SHUTTING_DOWN,
    ClaimedJob,
    JobError,
    Outcome,
    _claim,
    _is_pack_member,
    _isolated,
    _settle,
    failure_outcome,
    job_lines,
    job_reporter,
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


@dataclass(frozen=True)
class ClaimedPack:
    """A claimed pack, for its child process (picklable): each member's claim (its checkpoint
    already fetched into its scratch folder) and whether it has a pack member's checkpoint."""

    members: tuple[ClaimedJob, ...]
    resume: tuple[bool, ...]

    @property
    def id(self) -> str:
        return self.members[0].id

    @property
    def worker_id(self) -> str:
        return self.members[0].worker_id

    @property
    def spec(self) -> Any:  # what the child's memory cap reads (the device: one per pack)
        return self.members[0].spec


def regroup(
    specs: Sequence[tuple[str, str, ExperimentSpec | None]], memory_bytes: int | None = None
) -> list[tuple[list[str], str]]:
    """``(ids, queue)`` messages from ``(id, queue, spec)``, in order: the ids whose specs
    share a ``pack_key`` (and queue) together, split where regcore would refuse them as one
    pack (``why_not_packed``: e.g. members that list their regularizers in different orders)
    or where the pack's estimated memory would exceed ``memory_bytes``
    (``service.sweeps.packing.fits``); a spec that cannot pack (or was not valid) alone."""
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
            if fits([*members, spec], memory_bytes) and why_not_packed([*members, spec]) is None:
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


def run_pack_job(experiment_ids: list[str], ctx: WorkerContext) -> str:
    """Run the pack among ``experiment_ids`` (send the rest on); returns what happened."""
    messages = regroup(_read(ctx, experiment_ids), ctx.settings.worker_memory_bytes)
    here = next((m for m in messages if len(m[0]) > 1), None)
    others = [m for m in messages if m is not here]
    if others:
        log.info("pack: sending on %s (not packed with the rest)", [m[0] for m in others])
        send(ctx.sessions, app, others)
    if here is None:
        return "nothing to pack"
    ids, queue = here
    s = ctx.settings
    claimed_members: list[ClaimedJob] = []
    resume: list[bool] = []
    lines: list[run_logs.RunLog] = []
    alone: list[tuple[str | list[str], str]] = []
    try:
        for eid in ids:
            claimed = retry_db(partial(_claim, ctx, eid), s.lease_seconds, "claiming")
            if isinstance(claimed, str):
                log.info("experiment %s not claimed for the pack (%s)", eid, claimed)
                continue
            data, attempt, resume_keys = claimed
            # an earlier attempt's checkpoint: a lone run's resumes alone; a pack member's
            # resumes this pack (with the others', run_pack's to judge)
            try:
                kind = _fetch_checkpoint(ctx, ctx.scratch / eid / "checkpoints", resume_keys)
            except Exception:  # noqa: BLE001 - the single path meets the same error, says so
                log.warning("experiment %s: its checkpoint could not be fetched", eid,
                            exc_info=True)  # fmt: skip
                kind = "lone"
            if kind == "lone":

                def give_back(eid: str = eid) -> bool:
                    with ctx.sessions.begin() as session:
                        return jobs.release(session, eid, ctx.worker_id)

                if retry_db(give_back, s.lease_seconds, "releasing the run"):
                    alone.append((eid, queue))
                continue
            member = ClaimedJob(eid, ctx.worker_id, attempt, data, None)
            # the worker's lines of this member (claim, start, outcome); the child keeps its own
            lines.append(job_lines(ctx, member))
            claimed_members.append(member)
            resume.append(kind == "pack")
        if alone:
            send(ctx.sessions, app, alone)
        if not claimed_members:
            return "no member claimed"
        return _run(ctx, ClaimedPack(tuple(claimed_members), tuple(resume)))
    finally:
        for run_log in lines:
            run_log.close()


def _run(ctx: WorkerContext, pack: ClaimedPack) -> str:
    """Run a claimed pack (in a child process, or here) while the worker keeps each member's
    lease; settle each member from its outcome: one that ends inside the pack (cancelled,
    stopped, diverged) as soon as it ends (its lease keeper stopped), the rest at the end."""
    s = ctx.settings
    members = pack.members
    settled: dict[str, str] = {}
    keepers_of: dict[str, LeaseKeeper] = {}

    def member_ended(eid: str, outcome: Outcome) -> None:
        if eid in settled or eid not in keepers_of:
            return
        keepers_of[eid].stop()  # the write below ends the lease
        try:
            settled[eid] = _settle(ctx, eid, outcome)
        except Exception:  # noqa: BLE001 - settled again when the pack ends
            log.exception("experiment %s: its outcome could not be recorded yet", eid)
            return
        log.info("pack of %s: experiment %s ended (%s), the others go on",
                 [m.id for m in members], eid, settled[eid])  # fmt: skip

    runner: Any
    if _isolated(s):
        from worker.child import ChildRunner

        runner = ChildRunner(ctx, pack, SHUTTING_DOWN, on_member=member_ended)
    else:
        runner = PackRun(ctx, pack, SHUTTING_DOWN, on_member=member_ended)
    keepers = [
        LeaseKeeper(
            ctx.sessions,
            m.id,
            ctx.worker_id,
            lease_s=s.lease_seconds,
            every_s=s.heartbeat_seconds,
            on_lost=partial(runner.lose, m.id),
            alive_file=s.worker_heartbeat_file,
        )
        for m in members
    ]
    for m, k in zip(members, keepers, strict=True):
        keepers_of[m.id] = k
        k.start()
    try:
        try:
            outcomes: list[Outcome] = runner.run()
        except JobError as err:  # the pack's process raised outside run_pack, or died mute
            log.error("pack of %s: worker error: %s", [m.id for m in members], err)
            lost: set[str] = getattr(runner, "lost_ids", set())
            outcomes = [
                Outcome("failed", error=f"worker error: {err}", lease_lost=m.id in lost)
                for m in members
            ]
        finally:
            for k in keepers:
                k.stop()  # the last write below ends the lease
        return ", ".join(
            settled[m.id] if m.id in settled else _settle(ctx, m.id, outcome)
            for m, outcome in zip(members, outcomes, strict=True)
        )
    finally:
        for k in keepers:
            k.stop()
        shutil.rmtree(ctx.scratch / f"pack-{pack.id}", ignore_errors=True)


class PackRun:
    """The pack itself: one ``DbReporter`` per member (its epochs, checkpoints, cancel and
    lease, exactly as a single run's), provenance and inputs, ``run_pack``, an ``Outcome`` per
    member. Runs in the pack's child process (``execute_pack``), or in the worker's (inline
    isolation, where the lease keepers call ``lose``). ``on_member(experiment id, outcome)``:
    a member that ended while the pack goes on (``run_pack``'s ``member_ended``), its outcome
    the one ``run`` returns for it at the end; the child sends it to the worker, inline the
    worker settles it."""

    def __init__(
        self,
        ctx: WorkerContext,
        pack: ClaimedPack,
        stop: Any,
        on_member: Callable[[str, Outcome], None] | None = None,
    ):
        self.ctx, self.pack, self.on_member = ctx, pack, on_member
        # the members' points of an epoch, written in one transaction once all are reported
        self.epoch = PackEpoch(ctx.sessions, pack.members[0].worker_id, ctx.settings.lease_seconds)
        self.reporters = {m.id: job_reporter(ctx, m, stop, self.epoch) for m in pack.members}

    def lose(self, experiment_id: str) -> None:
        self.reporters[experiment_id].lose("renewing the lease")

    def run(self) -> list[Outcome]:
        ctx = self.ctx
        outcomes: dict[str, Outcome] = {}
        ready: list[tuple[ClaimedJob, ExperimentSpec, bool]] = []
        for m, resume in zip(self.pack.members, self.pack.resume, strict=True):
            try:
                spec = parse_spec(m.spec)
            except SpecError as err:
                outcomes[m.id] = Outcome("failed", error=f"the stored spec is not valid: {err}")
                continue
            provenance.record(ctx, m.id, m.worker_id, provenance.at_claim(spec, ctx, m.worker_id))
            refused = prepare_inputs(ctx, m.id, spec)  # uploads and references, by id
            if refused is not None:
                outcomes[m.id] = Outcome("failed", error=refused)
                continue
            ready.append((m, spec, resume))
        if ready:
            outcomes.update(self._pack(ready))
        return [outcomes[m.id] for m in self.pack.members]

    def _pack(self, ready: list[tuple[ClaimedJob, ExperimentSpec, bool]]) -> dict[str, Outcome]:
        ctx = self.ctx
        pack_dir = ctx.scratch / f"pack-{self.pack.id}"
        reporters = [self.reporters[m.id] for m, _, _ in ready]
        ended: dict[str, Outcome] = {}  # the members that ended while the pack went on

        def member_ended(i: int, result: RunResult) -> None:
            m, r = ready[i][0], reporters[i]
            ended[m.id] = outcome_of(ctx, m.id, result, r)
            if self.on_member is not None:
                self.on_member(m.id, ended[m.id])

        log.info(
            "pack of %d on %s (process %d): %s",
            len(ready), ctx.worker_id, os.getpid(), [m.id for m, _, _ in ready],
        )  # fmt: skip
        try:
            # the sys_* series as a single run has them (each member's: the pack's process)
            with collecting(resolve_device(ready[0][1].train.device)):
                results = run_pack(
                    [
                        PackMember(spec, ctx.scratch / m.id, r)
                        for (m, spec, _), r in zip(ready, reporters, strict=True)
                    ],
                    pack_dir,
                    cache_dir=Path(ctx.settings.cache_dir),
                    threads=ctx.threads,
                    checkpoint_every=PACK_CHECKPOINT_EVERY,
                    resume=any(resume for _, _, resume in ready),  # else nothing to resume
                    epoch_reported=self.epoch.flush,
                    member_ended=member_ended,
                )
            return {
                m.id: ended[m.id] if m.id in ended else outcome_of(ctx, m.id, result, r)
                for (m, _, _), result, r in zip(ready, results, reporters, strict=True)
            }
        except Exception as err:
            failed = failure_outcome(err, lease_lost=False)
            if failed is None:
                log.exception("pack of %s: worker error", [m.id for m, _, _ in ready])
                failed = Outcome("failed", error=f"worker error: {type(err).__name__}: {err}")
            else:
                log.error("pack of %s: %s", [m.id for m, _, _ in ready], failed.error)
            return {
                m.id: ended.get(m.id) or replace(failed, lease_lost=r.lease_lost)
                for (m, _, _), r in zip(ready, reporters, strict=True)
            }
        finally:
            shutil.rmtree(pack_dir, ignore_errors=True)


def execute_pack(
    ctx: WorkerContext,
    pack: ClaimedPack,
    stop: Any,
    on_member: Callable[[str, Outcome], None] | None = None,
) -> list[Outcome]:
    """The pack in its child process (``worker.child.child_main``): ``stop`` is the worker's
    (every member stops at its next step); ``on_member`` sends a member's outcome to the
    worker as it ends (``PackRun``)."""
    return PackRun(ctx, pack, stop, on_member).run()


def _fetch_checkpoint(ctx: WorkerContext, ckpt_dir: Path, keys: tuple[str, str, str] | None) -> str:
    """Put a member's recorded ``last`` checkpoint in ``ckpt_dir`` (emptied first: the
    database says which checkpoint is current, not the scratch folder); says whose it is:
    ``"pack"`` (a pack member's, to resume the pack from), ``"lone"`` (a lone run's) or
    ``"none"``. ``worker.tasks._fetch_last_checkpoint``, saying whose."""
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    if keys is None:
        return "none"
    for key, name in zip(keys, CHECKPOINT_FILES, strict=True):
        ctx.store.get(key, ckpt_dir / name)
    return "pack" if _is_pack_member(ckpt_dir / "last.json") else "lone"
