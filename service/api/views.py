"""Rows as JSON views (the shapes of ``service.api.schemas``): experiments lean and full,
checkpoints, sweeps. JSON has no NaN or Infinity: a diverged metric is reported as null."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy.orm import Session

from service.db import sweeps as sweeps_repo
from service.db.models import Checkpoint, Experiment, Sweep
from service.sweeps.results import results

#: the summary metrics a list row shows (the rest are in the full record).
HEADLINE = (
    "test_acc",
    "test_loss",
    "val_acc",
    "val_loss",
    "train_loss",
    "gen_gap",
    "ece",
    "epochs_run",
    "best_epoch",
)


def finite(value: Any) -> Any:
    """JSON has no NaN or Infinity: a diverged metric is reported as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def _progress(row: Experiment) -> dict[str, int]:
    return {"epoch": row.last_epoch or 0, "epochs": row.total_epochs or 0}


def headline(summary: dict[str, Any] | None) -> dict[str, float | None]:
    summary = summary or {}
    metrics = summary.get("metrics") or {}
    out: dict[str, Any] = {}
    for key in HEADLINE:
        value = metrics.get(key, summary.get(key))
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = finite(float(value))
    return out


def experiment_brief(row: Experiment) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "status": row.status,
        "created_at": row.created_at,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "metrics": headline(row.summary),
        "tags": row.tags or {},
        "sweep_id": row.sweep_id,
        "progress": _progress(row),
    }


def experiment_view(row: Experiment) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "status": row.status,
        "spec": row.spec,
        "created_at": row.created_at,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "summary": finite(row.summary),
        "error": row.error,
        "attempts": row.attempts,
        "cancel_requested": row.cancel_requested,
        "progress": _progress(row),
        "queue": row.queue,
        "sweep_id": row.sweep_id,
        "tags": row.tags or {},
        "note": row.note,
        "environment": row.environment,
    }


def checkpoint_view(row: Checkpoint) -> dict[str, Any]:
    return {
        "id": row.id,
        "experiment_id": row.experiment_id,
        "epoch": row.epoch,
        "kind": row.kind,
        "size": row.size,
        "sha256": row.sha256,
        "created_at": row.created_at,
        "url": f"/v1/experiments/{row.experiment_id}/checkpoints/{row.id}/file",
    }


def sweep_brief(session: Session, sweep: Sweep) -> dict[str, Any]:
    return {
        "id": sweep.id,
        "name": sweep.name,
        "status": sweep.status,
        "method": sweep.method,
        "created_at": sweep.created_at,
        "finished_at": sweep.finished_at,
        "counts": sweeps_repo.counts(sweep, sweeps_repo.trials(session, sweep)),
        "tags": sweep.tags or {},
    }


def sweep_view(session: Session, sweep: Sweep, keys: list[str] | None = None) -> dict[str, Any]:
    rows = sweeps_repo.trials(session, sweep)
    return finite(
        {
            "id": sweep.id,
            "name": sweep.name,
            "status": sweep.status,
            "method": sweep.method,
            "metric": sweep.metric,
            "mode": sweep.mode,
            "max_concurrent": sweep.max_concurrent,
            "early_stopping": sweep.early_stopping,
            "factors": sweep.factors,
            "created_at": sweep.created_at,
            "finished_at": sweep.finished_at,
            "counts": sweeps_repo.counts(sweep, rows),
            "tags": sweep.tags or {},
            "note": sweep.note,
            "experiments": [
                {
                    "idx": r.idx,
                    "config": r.config,
                    "seed": r.seed,
                    "experiment_id": r.experiment.id if r.experiment else None,
                    "status": sweeps_repo.trial_status(sweep, r),
                    "stop_reason": r.stop_reason,
                }
                for r in rows
            ],
            "results": results(
                sweep.configs,
                sweeps_repo.results_input(rows),
                metric=sweep.metric,
                mode=sweep.mode,
                keys=keys,
                factors=sweep.factors,
            )
            | (_search_report(sweep, rows) if sweep.method == "search" else {}),
        }
    )


def _search_report(sweep: Any, rows: Any) -> dict[str, Any]:
    """A search sweep's best configuration, objective history and importances."""
    from service.sweeps.search import report

    trials = [
        (r.config, r.experiment.status if r.experiment else None,
         r.experiment.summary if r.experiment else None, r.stop_reason)
        for r in rows
    ]  # fmt: skip
    return {"search": report(sweep.request, sweep.configs, trials, sweep.metric, sweep.mode)}
