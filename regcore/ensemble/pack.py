"""A pack: independent runs that share architecture, data and epochs, trained as one batched run.

For a sweep: trials whose specs have the same ``pack_key`` run through ``run_pack`` as one
``BatchedMembers`` engine, and each trial still gets what a lone run gives it, in its own
``workdir`` and through its own reporter: ``on_start``, ``on_epoch`` with its own metric keys (the
lone ``Trainer``'s), ``on_checkpoint`` for its own weights, ``metrics.jsonl``, ``summary.json``
and a ``RunResult``. Per member:

* ``reporter.should_cancel()`` is asked between steps; True cancels that member alone
  (status ``cancelled``); the others go on;
* ``reporter.should_stop()``, when the reporter has it, is asked after each epoch's
  ``on_epoch``; True stops that member there (status ``succeeded``, ``reason`` says it was
  stopped), as median or ASHA stopping would;
* a member whose loss becomes NaN/inf fails alone (status ``failed``).

``epoch_reported(epoch)``, when given, is called once an epoch after every member's
``on_epoch`` and before any checkpoint of that epoch: a reporter may hold its member's points
until then, so that the whole pack's epoch is one write (the worker's is one transaction), and
stored before any checkpoint that a resume would continue from.

``member_ended(i, result)``, when given, is called once for each member that ends (stopped,
cancelled, diverged) before the pack does, after its last epoch's reports and
``epoch_reported`` and after its final checkpoint, with its ``RunResult`` (its ``summary.json``
written then): the very result ``run_pack`` returns for it at the end, so a caller may record a
member's outcome while the others train on. Members that end with the pack are not reported
through it.

Each member's ``last`` checkpoint (``workdir/checkpoints``, every ``checkpoint_every`` epochs
and at the end, sent through its ``on_checkpoint`` as a lone run's) holds its whole slice of the
engine: its weights, and as training state (``BatchedMembers.member_train_state``, tagged
``{"pack": pack_dir.name}``) the pack's epoch, its status, its slice of the optimizer state,
its schedule, its shuffle and noise generators and its early stopping. A member that has ended
(stopped, cancelled, diverged) is saved once more the epoch it ends (before ``member_ended``),
then left as it is; it resumes with the running members even when that is after their last
checkpoint (it is frozen). There is no pack-wide checkpoint: ``run_pack(resume=True)`` loads
the members' own checkpoints (``resume_pack``) when every member has one and those of the
members still running are of one epoch E, and goes on from E (each member's ``metrics.jsonl``
cut back to E, or to where an ended member ended, so no point is written twice); otherwise
every member starts over from epoch 0 and ``on_start`` says why (``not_resumed``). The
members need not be the pack that wrote them: each member's state is its own, so a pack that
lost a member (cancelled meanwhile) resumes the others.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from regcore.ensemble.batched import SHARED_TRAIN, BatchedMembers, why_not_batched_members
from regcore.spec import ExperimentSpec
from regcore.training.context import RunContext
from regcore.training.driver import Outlet
from regcore.training.reporter import NullReporter, Reporter
from regcore.training.result import RunResult, write_summary

log = logging.getLogger(__name__)


@dataclass
class PackMember:
    spec: ExperimentSpec
    workdir: Path
    reporter: Reporter | None = None


def pack_key(spec: ExperimentSpec) -> str | None:
    """Specs with equal keys can run as one pack; None when ``spec`` cannot be packed."""
    if spec.ensemble.size > 1 or why_not_batched_members([spec]) is not None:
        return None
    shared = {
        "model": spec.model.model_dump(mode="json"),
        "data": spec.data.model_dump(mode="json"),
        "seed": spec.seed,  # the data is built from it
        "train": {k: spec.train.model_dump(mode="json")[k] for k in SHARED_TRAIN},
        "device": spec.train.device,
    }
    return hashlib.sha256(json.dumps(shared, sort_keys=True).encode()).hexdigest()[:16]


def why_not_packed(specs: list[ExperimentSpec]) -> str | None:
    keys = {pack_key(s) for s in specs}
    if None in keys:
        return "a spec cannot be packed (an ensemble, or not batchable)"
    if len(keys) > 1:
        return "the specs differ in model, data, seed or shared train settings"
    return why_not_batched_members(specs)


def run_pack(
    members: list[PackMember],
    pack_dir: Path,
    *,
    device: str | torch.device | None = None,
    cache_dir: Path | None = None,
    threads: int | None = None,
    resume: bool = False,
    checkpoint_every: int = 1,
    epoch_reported: Callable[[int], None] | None = None,
    member_ended: Callable[[int, RunResult], None] | None = None,
) -> list[RunResult]:
    """Train ``members`` as one batched run; one ``RunResult`` per member, in order.
    ``epoch_reported`` and ``member_ended``: see the module docstring.

    ``resume``: go on from the members' own ``last`` checkpoints (``workdir/checkpoints``)
    when they fit together (``resume_pack``), else start every member over from epoch 0 (the
    reason is logged and given to each ``on_start`` as ``not_resumed``). ``pack_dir``'s name
    marks the members' checkpoints as this pack's; nothing is written under it."""
    specs = [m.spec for m in members]
    reason = why_not_packed(specs)
    if reason is not None:
        raise ValueError(f"cannot run these specs as one pack: {reason}")
    ctx = RunContext.build(
        specs[0], Path(pack_dir), device=device, cache_dir=cache_dir, threads=threads
    )
    eng = BatchedMembers(
        specs, ctx.data, device=ctx.device, threads=threads or specs[0].train.threads
    )
    torch.set_num_threads(eng.threads)
    # each member's identity: its log, reporter and checkpoints, as a lone run's
    outlets = [
        Outlet(
            ctx.stage(
                spec=m.spec,
                workdir=Path(m.workdir),
                reporter=m.reporter or NullReporter(),
                checkpoint_every=checkpoint_every,
            )
        )
        for m in members
    ]
    reporters = [o.ctx.reporter for o in outlets]
    pack_name = Path(pack_dir).name
    not_resumed = resume_pack(eng, outlets) if resume else None
    resumed = resume and not_resumed is None
    if not_resumed is not None:
        log.info("pack of %d starts over from epoch 0: %s", len(members), not_resumed)
    # a member that had ended when its checkpoint was written has the checkpoint it ends with
    saved_ended = [resumed and st.status != "running" for st in eng.status]
    # each member's result, made when it ends before the pack does (``member_ended``); one
    # that had ended before a resume ends with the pack
    results: list[RunResult | None] = [None] * len(members)
    pending = [st.status == "running" for st in eng.status]
    for m, out, st in zip(members, outlets, eng.status, strict=True):
        start: dict[str, Any] = {
            "epochs": m.spec.train.epochs,
            "threads": eng.threads,
            "pack": len(members),
        }
        if not_resumed is not None:
            start["not_resumed"] = not_resumed
        # an ended member's log as it ended (its checkpoint may be of a later epoch than the
        # running members' it resumes with: ``resume_pack``)
        out.open(max(eng.epoch, st.epochs_run), resumed, start)
    while not eng.done:
        if eng.train_epoch(cancel=lambda i: reporters[i].should_cancel()):
            break  # every member was cancelled
        per, _ = eng.evaluate()
        for i, em in enumerate(eng.end_epoch(per)):
            if not em or eng.status[i].status == "failed":
                continue
            outlets[i].report(eng.epoch, em)
            stop = getattr(reporters[i], "should_stop", None)
            if eng.status[i].status == "running" and stop is not None and stop():
                eng.status[i].status = "stopped"
                eng.status[i].reason = f"stopped by its scheduler after epoch {eng.epoch}"
        if epoch_reported is not None:
            epoch_reported(eng.epoch)
        due = checkpoint_every and (eng.done or eng.epoch % checkpoint_every == 0)
        if checkpoint_every:
            # every member still running (every ``checkpoint_every`` epochs), and once each
            # member that has ended (stopped, cancelled, diverged), the epoch it ends: together
            # they resume the pack (``resume_pack``)
            for i, (out, st) in enumerate(zip(outlets, eng.status, strict=True)):
                if saved_ended[i] or (st.status == "running" and not due):
                    continue
                saved_ended[i] = st.status != "running"
                out.save(
                    "last",
                    st.epochs_run,
                    eng.member_weights(i),
                    {"pack": pack_name, **eng.member_train_state(i)},
                    st.metrics,
                )
        ended = [i for i, st in enumerate(eng.status) if pending[i] and st.status != "running"]
        if ended and not eng.done:  # those that end with the pack are made below
            for i, measured in zip(ended, eng.finish(ended), strict=True):
                pending[i] = False
                results[i] = r = _member_result(members[i], eng, i, measured)
                if member_ended is not None:
                    member_ended(i, r)
    for out in outlets:
        out.close()
    finals = eng.finish()
    return [
        r if r is not None else _member_result(m, eng, i, finals[i])
        for i, (m, r) in enumerate(zip(members, results, strict=True))
    ]


def _member_result(
    m: PackMember, eng: BatchedMembers, i: int, final: dict[str, float]
) -> RunResult:
    """Member ``i``'s ``RunResult`` from its final measure (``eng.finish()``'s, of it alone
    when it ends before the pack), and its ``summary.json``."""
    st = eng.status[i]
    status = {"running": "succeeded", "stopped": "succeeded"}.get(st.status, st.status)
    metrics: dict[str, Any] = final if status != "failed" else st.metrics
    metrics = {k: v for k, v in metrics.items() if k not in ("epochs_run", "best_epoch")}
    best = int(final.get("best_epoch", 0)) or None
    r = RunResult(status, st.epochs_run, best, metrics, st.reason, dict(eng.timings))
    write_summary(m.workdir, r.summary())
    return r


def resume_pack(eng: BatchedMembers, outlets: list[Outlet]) -> str | None:
    """Load each member's ``last`` checkpoint of its spec into ``eng``; None when loaded, else
    why not (a member without one, one that is not a pack member's, or checkpoints that do not
    fit together: members still running at different epochs), ``eng`` left as built."""
    loaded = []
    for i, out in enumerate(outlets):
        ckpt = out.last_checkpoint()
        if ckpt is None:
            return f"member {i} has no checkpoint of its spec"
        if "pack" not in ckpt.train_state:
            return f"member {i}'s checkpoint is a lone run's"
        loaded.append((ckpt.model_state, ckpt.train_state))
    # a member that has ended is saved the epoch it ends, maybe after the running members'
    # last checkpoint: it is frozen, so it resumes with them from theirs
    running = [int(s["epoch"]) for _, s in loaded if s["status"] == "running"]
    if running:
        loaded = [
            (w, s if s["status"] == "running" else {**s, "epoch": min(int(s["epoch"]), *running)})
            for w, s in loaded
        ]
    try:
        eng.load_members(loaded)
    except (ValueError, KeyError, TypeError) as err:
        return f"the members' checkpoints do not fit together: {err}"
    return None
