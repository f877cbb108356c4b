"""Sweeps in the database: create, launch within ``max_concurrent``, early-stop, cancel, read.

How a sweep runs (the simplest design that keeps at most ``max_concurrent`` experiments queued
or running, with no new experiment status): every (configuration, seed) is a ``sweep_trials``
row holding its validated spec. ``POST /v1/sweeps`` creates the sweep, its trials, and the first
``max_concurrent`` experiments (enqueued like any other). After that, ``tick`` — called on every
reconciler pass (``reglab serve`` runs one every ``REGLAB_RECONCILE_SECONDS``) — does three
things for each running sweep:

1. early stopping: applies the median rule or ASHA to the per-epoch values of the sweep's metric
   and sets ``cancel_requested`` on the running experiments to stop (the worker stops them within
   a step, as for a user's cancel); the reason is kept on the trial (``stop_reason``);
2. launches the next trials as experiments, in trial order, while fewer than ``max_concurrent``
   of the sweep's experiments are queued or running (the caller enqueues them after commit,
   those that can train together as one pack message: ``service.sweeps.packing``);
3. marks the sweep ``completed`` once every trial was launched and every experiment ended.

A trial not yet launched has no experiment: the sweep reports it as ``pending``. Cancelling a
sweep cancels its queued and running experiments and launches nothing more.

Functions take a Session and never commit (the caller owns the transaction).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from regcore.spec import SpecError, parse_spec
from service.db import experiments as experiments_repo
from service.db.models import (
    TERMINAL,
    Experiment,
    Metric,
    Sweep,
    SweepTrial,
    utcnow,
)
from service.sweeps import early_stop, packing
from service.sweeps.plan import MAX_EXPERIMENTS, Plan, SweepRequest

ACTIVE = ("queued", "running")


def create(
    session: Session,
    req: SweepRequest,
    plan: Plan,
    *,
    queues: Sequence[str],
    owner: str | None,
    max_attempts: int,
) -> Sweep:
    """The sweep and its trials (``queues[i]`` is the queue of ``plan.trials[i]``); launch the
    first experiments with ``launch``."""
    sweep = Sweep(
        owner=owner,
        name=req.name,
        status="running",
        method=req.method,
        request=req.model_dump(mode="json"),
        configs=plan.configs,
        factors=plan.factors,
        metric=req.metric,
        mode=req.direction,
        max_concurrent=req.max_concurrent,
        max_attempts=max_attempts,
        early_stopping=req.early_stopping.model_dump() if req.early_stopping else None,
        cancel_requested=False,
        created_at=utcnow(),
    )
    session.add(sweep)
    session.flush()
    session.add_all(
        SweepTrial(
            sweep_id=sweep.id,
            idx=i,
            config=t.config,
            seed=t.seed,
            spec=t.spec.model_dump(mode="json"),
            spec_hash=t.spec.spec_hash(),
            queue=queues[i],
            total_epochs=t.spec.train.epochs,
        )
        for i, t in enumerate(plan.trials)
    )
    session.flush()
    return sweep


def get(session: Session, sweep_id: str, owner: str | None = None) -> Sweep | None:
    row = session.get(Sweep, sweep_id)
    if row is None or (owner is not None and (row.owner or "") != owner):
        return None
    return row


def _lock(session: Session, sweep_id: str) -> Sweep | None:
    """The sweep row, locked on PostgreSQL so two reconcilers never launch the same slots."""
    return session.scalars(select(Sweep).where(Sweep.id == sweep_id).with_for_update()).first()


def launch(session: Session, sweep: Sweep) -> list[Experiment]:
    """Create experiments for the next pending trials while fewer than ``max_concurrent`` are
    queued or running; returns them (enqueue them after the commit)."""
    if sweep.cancel_requested or sweep.status != "running":
        return []
    active = session.scalar(
        select(func.count())
        .select_from(Experiment)
        .where(Experiment.sweep_id == sweep.id, Experiment.status.in_(ACTIVE))
    )
    free = sweep.max_concurrent - int(active or 0)
    if free <= 0:
        return []
    if sweep.method == "search":
        _search_more(session, sweep, free)
    pending = session.scalars(
        select(SweepTrial)
        .where(SweepTrial.sweep_id == sweep.id, SweepTrial.experiment_id.is_(None))
        .order_by(SweepTrial.idx)
        .limit(free)
    ).all()
    launched = []
    for trial in pending:
        row = experiments_repo.create(
            session,
            name=trial.spec.get("name", sweep.name),
            spec=trial.spec,
            spec_hash=trial.spec_hash,
            queue=trial.queue,
            total_epochs=trial.total_epochs,
            max_attempts=sweep.max_attempts,
            owner=sweep.owner,
        )
        row.sweep_id = sweep.id
        # Conditional: a concurrent tick that took this trial first wins; ours is dropped.
        taken = session.execute(
            update(SweepTrial)
            .where(
                SweepTrial.sweep_id == sweep.id,
                SweepTrial.idx == trial.idx,
                SweepTrial.experiment_id.is_(None),
            )
            .values(experiment_id=row.id)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            session.delete(row)
            continue
        launched.append(row)
    session.flush()
    return launched


def _search_more(session: Session, sweep: Sweep, free: int) -> None:
    """A search sweep: when no trial waits, ask the sampler for up to ``free`` more while under
    its budget (``service.sweeps.search``: a study rebuilt from these rows)."""
    from service.sweeps import search

    rows = session.scalars(
        select(SweepTrial).where(SweepTrial.sweep_id == sweep.id).order_by(SweepTrial.idx)
    ).all()
    if any(t.experiment_id is None for t in rows):
        return
    req = SweepRequest.model_validate(sweep.request)
    n = min(free, (req.trials or MAX_EXPERIMENTS) - len(rows))
    started = sweep.created_at.replace(tzinfo=None)
    elapsed = (utcnow().replace(tzinfo=None) - started).total_seconds()
    if n <= 0 or (req.budget_seconds is not None and elapsed >= req.budget_seconds):
        return
    space = search.parse_search_space(req.space)
    exps = {
        e.id: e
        for e in session.scalars(select(Experiment).where(Experiment.sweep_id == sweep.id)).all()
    }
    found = [(t, exps.get(t.experiment_id or "")) for t in rows]
    past = search.past_of(
        space,
        sweep.configs,
        [(t.config, e.status if e else None, e.summary if e else None, t.stop_reason)
         for t, e in found],
        sweep.metric,
    )  # fmt: skip
    configs = list(sweep.configs)
    for p in search.propose(space, past, n, sweep.mode, req.sampler, req.search_seed):
        i = len(configs)
        data = {**search.config_spec(req.base, space, p.config), "seed": rows[0].seed}
        data["name"] = f"{req.name}/c{i}/s{data['seed']}"
        try:
            spec = parse_spec(data)
        except SpecError:
            continue  # a point the space allows but the spec refuses: not run, not retried
        configs.append(p.config)
        session.add(
            SweepTrial(
                sweep_id=sweep.id,
                idx=i,
                config=i,
                seed=rows[0].seed,
                spec=spec.model_dump(mode="json"),
                spec_hash=spec.spec_hash(),
                queue=rows[0].queue,
                total_epochs=spec.train.epochs,
            )  # fmt: skip
        )
    sweep.configs = configs
    session.flush()


def curves(session: Session, sweep_id: str, key: str) -> dict[str, dict[int, float]]:
    """``{experiment_id: {epoch: value}}`` of one metric over the sweep's experiments."""
    stmt = (
        select(Metric.experiment_id, Metric.step, Metric.value)
        .join(Experiment, Experiment.id == Metric.experiment_id)
        .where(Experiment.sweep_id == sweep_id, Metric.key == key)
    )
    out: dict[str, dict[int, float]] = defaultdict(dict)
    for eid, step, value in session.execute(stmt):
        out[eid][step] = value
    return dict(out)


def decide_stops(session: Session, sweep: Sweep) -> dict[str, str]:
    """The sweep's running experiments that its early-stopping rule stops, with the reasons."""
    rule = sweep.early_stopping
    if not rule:
        return {}
    running = dict(
        session.execute(
            select(Experiment.id, Experiment.total_epochs).where(
                Experiment.sweep_id == sweep.id,
                Experiment.status == "running",
                Experiment.cancel_requested.is_(False),
            )
        ).all()
    )
    if not running:
        return {}
    data = curves(session, sweep.id, sweep.metric)
    if rule["rule"] in ("successive_halving", "hyperband"):
        return _search_stops(session, sweep, set(running), data, rule)
    if rule["rule"] == "median":
        return early_stop.median_stopping(
            data,
            list(running),
            metric=sweep.metric,
            mode=sweep.mode,
            grace_epochs=rule["grace_epochs"],
            min_trials=rule["min_trials"],
        )
    stops: dict[str, str] = {}
    # Rungs lie below each trial's own budget (a space may vary train.epochs).
    for budget in sorted(set(running.values())):
        ids = [i for i, e in running.items() if e == budget]
        stops.update(
            early_stop.asha(
                data,
                ids,
                metric=sweep.metric,
                mode=sweep.mode,
                max_epochs=budget,
                min_epochs=rule["min_epochs"],
                reduction_factor=rule["reduction_factor"],
            )
        )
    return stops


def _search_stops(
    session: Session, sweep: Sweep, running: set[str], data: dict[str, dict[int, float]],
    rule: dict[str, Any],
) -> dict[str, str]:  # fmt: skip
    """A search sweep's running trials that Optuna's pruner stops, from a rebuilt study."""
    from service.sweeps import search

    req = SweepRequest.model_validate(sweep.request)
    space = search.parse_search_space(req.space)
    rows = trials(session, sweep)
    ids = [r.experiment.id if r.experiment else "" for r in rows]
    past = search.past_of(
        space,
        sweep.configs,
        [(r.config, r.experiment.status if r.experiment else None,
          r.experiment.summary if r.experiment else None, r.stop_reason) for r in rows],
        sweep.metric,
        [data.get(i, {}) for i in ids],
    )  # fmt: skip
    # a trial still running is "running" for the pruner; so is a queued one (no values yet)
    verdicts = search.prune(space, past, sweep.mode, rule["rule"], rule["min_epochs"],
                            rule["reduction_factor"])  # fmt: skip
    live = [i for i, p in zip(ids, past, strict=True) if p.state == "running"]
    return {
        eid: f"{rule['rule']} (Optuna): below the top 1/{rule['reduction_factor']} at its rung"
        for eid, stopped in zip(live, verdicts, strict=True)
        if stopped and eid in running
    }


def stop(session: Session, sweep_id: str, reasons: dict[str, str]) -> list[str]:
    """Ask the running experiments in ``reasons`` to stop; returns those that were asked."""
    stopped = []
    for eid, reason in sorted(reasons.items()):
        result = session.execute(
            update(Experiment)
            .where(
                Experiment.id == eid,
                Experiment.status == "running",
                Experiment.cancel_requested.is_(False),
            )
            .values(cancel_requested=True)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            session.execute(
                update(SweepTrial)
                .where(SweepTrial.sweep_id == sweep_id, SweepTrial.experiment_id == eid)
                .values(stop_reason=reason)
                .execution_options(synchronize_session=False)
            )
            stopped.append(eid)
    return stopped


def _settle(session: Session, sweep: Sweep) -> None:
    """completed: every trial launched and every experiment ended."""
    pending = session.scalar(
        select(func.count())
        .select_from(SweepTrial)
        .where(SweepTrial.sweep_id == sweep.id, SweepTrial.experiment_id.is_(None))
    )
    active = session.scalar(
        select(func.count())
        .select_from(Experiment)
        .where(Experiment.sweep_id == sweep.id, Experiment.status.in_(ACTIVE))
    )
    if not pending and not active:
        sweep.status = "completed"
        sweep.finished_at = utcnow()


@dataclass
class Tick:
    #: (experiment id, queue) of the experiments created; enqueue them after the commit.
    launched: list[tuple[str, str]] = field(default_factory=list)
    #: the same experiments as the messages to send: (ids, queue), several ids for a pack
    #: (``service.sweeps.packing``)
    messages: list[tuple[list[str], str]] = field(default_factory=list)
    #: experiment id -> why early stopping stopped it.
    stopped: dict[str, str] = field(default_factory=dict)


def tick(session: Session, pack_size: int | None = 1) -> Tick:
    """One pass over the running sweeps: early stopping, launches (in packs of up to
    ``pack_size``: ``service.sweeps.packing``), completion."""
    out = Tick()
    for sweep_id in session.scalars(select(Sweep.id).where(Sweep.status == "running")).all():
        _step(session, sweep_id, out, pack_size)
    return out


def advance(session: Session, experiment_id: str, pack_size: int | None = 1) -> Tick:
    """The same step for the sweep of one experiment that just ended, so the sweep's next
    trial starts then rather than at the next reconciler pass (a worker calls it after each
    run); nothing for an experiment outside a sweep."""
    out = Tick()
    sweep_id = session.scalar(select(Experiment.sweep_id).where(Experiment.id == experiment_id))
    if sweep_id is not None:
        _step(session, sweep_id, out, pack_size)
    return out


def _step(session: Session, sweep_id: str, out: Tick, pack_size: int | None) -> None:
    sweep = _lock(session, sweep_id)
    if sweep is None or sweep.status != "running":
        return
    reasons = decide_stops(session, sweep)
    for eid in stop(session, sweep.id, reasons):
        out.stopped[eid] = reasons[eid]
    rows = launch(session, sweep)
    out.launched += [(r.id, r.queue) for r in rows]
    out.messages += packing.group(rows, pack_size)
    _settle(session, sweep)


def cancel(session: Session, sweep: Sweep) -> list[str]:
    """No more launches; queued experiments end cancelled, running ones are asked to stop."""
    sweep.cancel_requested = True
    if sweep.status == "running":
        sweep.status = "cancelled"
        sweep.finished_at = utcnow()
    ids = session.scalars(
        select(Experiment.id).where(Experiment.sweep_id == sweep.id, Experiment.status.in_(ACTIVE))
    ).all()
    for eid in ids:
        experiments_repo.request_cancel(session, eid)
    session.flush()
    return list(ids)


# --- reading ----------------------------------------------------------------------------------


@dataclass
class TrialRow:
    idx: int
    config: int
    seed: int
    experiment: Experiment | None
    stop_reason: str | None


def trials(session: Session, sweep: Sweep) -> list[TrialRow]:
    stmt = (
        select(SweepTrial, Experiment)
        .outerjoin(Experiment, Experiment.id == SweepTrial.experiment_id)
        .where(SweepTrial.sweep_id == sweep.id)
        .order_by(SweepTrial.idx)
    )
    return [
        TrialRow(t.idx, t.config, t.seed, e, t.stop_reason) for t, e in session.execute(stmt).all()
    ]


def trial_status(sweep: Sweep, row: TrialRow) -> str:
    """Its experiment's status; a trial never launched is ``pending``, or ``skipped`` once the
    sweep was cancelled (it never will be)."""
    if row.experiment is not None:
        return row.experiment.status
    return "skipped" if sweep.cancel_requested else "pending"


def counts(sweep: Sweep, rows: Sequence[TrialRow]) -> dict[str, int]:
    """Experiments by status, plus ``pending`` (not launched yet; ``skipped`` once cancelled)."""
    c: Counter[str] = Counter({s: 0 for s in ("pending", "queued", "running", *sorted(TERMINAL))})
    for r in rows:
        c[trial_status(sweep, r)] += 1
    c["stopped_early"] = sum(
        # asked to stop and not (yet) succeeded: a run that ended before the worker saw the
        # request keeps its result
        1
        for r in rows
        if r.stop_reason and r.experiment and r.experiment.status != "succeeded"
    )
    return dict(c)


def list_sweeps(session: Session, owner: str | None, limit: int = 50) -> list[Sweep]:
    stmt = select(Sweep).order_by(Sweep.created_at.desc(), Sweep.id.desc()).limit(limit)
    if owner is not None:
        stmt = stmt.where(Sweep.owner == owner)
    return list(session.scalars(stmt))


def results_input(rows: Sequence[TrialRow]) -> list[tuple[int, dict[str, Any] | None]]:
    """(configuration, summary) of the runs that count: the succeeded ones."""
    return [
        (r.config, r.experiment.summary)
        for r in rows
        if r.experiment is not None and r.experiment.status == "succeeded"
    ]
