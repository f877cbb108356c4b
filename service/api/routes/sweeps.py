"""``/v1/sweeps`` (grid, random and factorial sweeps with replicates, early stopping, results
and plots) and ``/v1/compare`` (experiments side by side).

How a sweep's experiments are launched within ``max_concurrent`` is told in
``service.db.sweeps``; the request's fields in ``service.sweeps.plan.SweepRequest``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from celery import Celery
from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from regcore.spec import validate_strict
from service import admission
from service.api.auth import OwnerDep
from service.api.deps import CeleryDep, SessionDep, SettingsDep
from service.api.errors import APIError, not_found
from service.api.routes.experiments import (
    _experiment,
    _finite,
    _keys_param,
    _queue_for,
    _refuse_simple_bodies,
    _shown,
    experiment_view,
    read_json_body,
)
from service.db import experiments as experiments_repo
from service.db import sweeps as repo
from service.db.models import Sweep
from service.queue import enqueue
from service.settings import Settings
from service.sweeps.plan import PlanError, SweepRequest, expand
from service.sweeps.results import results
from service.sweeps.stats import metric_keys

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"])
compare_router = APIRouter(prefix="/v1", tags=["sweeps"])

_ID = re.compile(r"^[0-9a-f]{32}$")
#: like MLflow's run comparison: more than this many runs side by side is refused.
MAX_COMPARE = 100
#: a sweep body carries a base spec plus the space: allow a few specs' worth.
SWEEP_BODY_FACTOR = 4


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _field(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in ("median", "asha", "int", "list[int]"):  # union tags are not fields
            out += f".{part}" if out else str(part)
    return out or "body"


# --- views ------------------------------------------------------------------------------------


def sweep_view(session: Session, sweep: Sweep, keys: list[str] | None = None) -> dict[str, Any]:
    rows = repo.trials(session, sweep)
    return _finite(
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
            "created_at": _time(sweep.created_at),
            "finished_at": _time(sweep.finished_at),
            "counts": repo.counts(sweep, rows),
            "experiments": [
                {
                    "idx": r.idx,
                    "config": r.config,
                    "seed": r.seed,
                    "experiment_id": r.experiment.id if r.experiment else None,
                    "status": r.experiment.status if r.experiment else "pending",
                    "stop_reason": r.stop_reason,
                }
                for r in rows
            ],
            "results": results(
                sweep.configs,
                repo.results_input(rows),
                metric=sweep.metric,
                mode=sweep.mode,
                keys=keys,
                factors=sweep.factors,
            ),
        }
    )


def _sweep(session: Session, sweep_id: str, owner: str) -> Sweep:
    row = repo.get(session, sweep_id, owner) if _ID.match(sweep_id) else None
    if row is None:
        raise not_found("sweep", _shown(sweep_id))
    return row


# --- routes -----------------------------------------------------------------------------------


@router.post(
    "",
    status_code=202,
    responses={413: {}, 415: {}, 422: {}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": SweepRequest.model_json_schema()}},
        }
    },
)
async def create_sweep(
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    celery: CeleryDep,
    owner: OwnerDep,
) -> dict[str, Any]:
    """Expand the sweep into one experiment per configuration and seed (all validated first),
    and launch the first ``max_concurrent``; the reconciler launches the rest as they end."""
    data = await read_json_body(request, settings.max_spec_bytes * SWEEP_BODY_FACTOR)
    try:
        req = validate_strict(SweepRequest, data)  # as the schema reads: no "3" for 3
    except ValidationError as err:
        detail = [
            {"field": _field(tuple(e["loc"])), "message": e["msg"].removeprefix("Value error, ")}
            for e in err.errors()
        ]
        raise APIError(422, "invalid sweep", detail) from None
    except ValueError as err:  # data JSON cannot hold (it came from JSON: never, in practice)
        raise APIError(422, "invalid sweep", [{"field": "body", "message": str(err)}]) from None
    try:
        plan = await run_in_threadpool(expand, req)
    except PlanError as err:
        raise APIError(422, "invalid sweep", err.errors) from None
    admission.admit_sweep(req, plan, settings)  # 422 for configurations too big for a worker
    return await run_in_threadpool(_create, req, plan, owner, response, session, settings, celery)


def _create(
    req: SweepRequest,
    plan: Any,
    owner: str,
    response: Response,
    session: Session,
    settings: Settings,
    celery: Celery,
) -> dict[str, Any]:
    queues = [_queue_for(t.spec, settings) for t in plan.trials]
    sweep = repo.create(
        session, req, plan, queues=queues, owner=owner, max_attempts=settings.max_attempts
    )
    launched = [(r.id, r.queue) for r in repo.launch(session, sweep)]
    session.commit()
    for eid, queue in launched:  # after the commit, so the worker finds the rows
        if enqueue(celery, eid, queue):
            experiments_repo.mark_enqueued(session, eid)
    session.commit()
    response.headers["Location"] = f"/v1/sweeps/{sweep.id}"
    return sweep_view(session, sweep)


@router.get("")
def list_sweeps(
    session: SessionDep, owner: OwnerDep, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> dict[str, Any]:
    """Newest first: id, name, status, method and counts (no results; read one sweep for them)."""
    items = []
    for s in repo.list_sweeps(session, owner, limit):
        items.append(
            {
                "id": s.id,
                "name": s.name,
                "status": s.status,
                "method": s.method,
                "created_at": _time(s.created_at),
                "counts": repo.counts(s, repo.trials(session, s)),
            }
        )
    return {"items": items}


@router.get("/{sweep_id}")
def get_sweep(
    sweep_id: str,
    session: SessionDep,
    owner: OwnerDep,
    keys: Annotated[
        str | None, Query(description="comma-separated metric keys of the results")
    ] = None,
) -> dict[str, Any]:
    """Counts by status, the experiments, and the results: per configuration the mean and 95%
    interval over seeds of each metric (succeeded runs only), the best configuration by the
    sweep's metric, and for a factorial sweep each factor's main effect and the two-way
    interactions with their intervals."""
    return sweep_view(session, _sweep(session, sweep_id, owner), _keys_param(keys))


@router.post("/{sweep_id}/cancel", responses={415: {}})
def cancel_sweep(
    sweep_id: str, request: Request, session: SessionDep, owner: OwnerDep
) -> dict[str, Any]:
    """No more experiments are launched; queued ones end cancelled, running ones stop."""
    _refuse_simple_bodies(request)
    sweep = _sweep(session, sweep_id, owner)
    repo.cancel(session, sweep)
    session.commit()
    return sweep_view(session, sweep)


@router.get(
    "/{sweep_id}/plot",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, 422: {}},
)
def plot(
    sweep_id: str,
    session: SessionDep,
    owner: OwnerDep,
    y: Annotated[str | None, Query(description="metric key (default: the sweep's metric)")] = None,
    x: Annotated[
        str | None, Query(max_length=200, description="a space path or factor (line plots)")
    ] = None,
    kind: Literal["line", "reliability"] = "line",
) -> Response:
    """A PNG: ``kind=line`` plots metric ``y`` (mean and 95% band over seeds) against parameter
    ``x``; ``kind=reliability`` plots each configuration's test accuracy against its mean
    confidence next to the diagonal of perfect calibration."""
    from service.sweeps import plot as plots  # matplotlib is slow to import

    sweep = _sweep(session, sweep_id, owner)
    rows = repo.trials(session, sweep)
    runs = repo.results_input(rows)
    available = metric_keys(s for _, s in runs)
    if kind == "reliability":
        missing = [k for k in ("confidence", "test_acc") if k not in available]
        if missing:
            raise APIError(
                422,
                "invalid request",
                [
                    {
                        "field": "kind",
                        "message": f"a reliability plot needs {' and '.join(missing)} in the "
                        "summaries of succeeded runs (classification); none have it yet",
                    }
                ],
            )
        res = results(sweep.configs, runs, metric=sweep.metric, mode=sweep.mode)
        png = plots.reliability_plot(res["table"], title=f"{sweep.name}: calibration")
        return Response(png, media_type="image/png")
    y = y or sweep.metric
    params = list(sweep.configs[0]) if sweep.configs else []
    x = x or (params[0] if params else None)
    if x is None or x not in params:
        raise APIError(
            422,
            "invalid request",
            [{"field": "x", "message": f"x must be one of the sweep's parameters: {params}"}],
        )
    if y not in available:
        raise APIError(
            422,
            "invalid request",
            [
                {
                    "field": "y",
                    "message": f"no succeeded run has metric {y!r}"
                    + (f"; available: {available}" if available else " yet"),
                }
            ],
        )
    res = results(sweep.configs, runs, metric=sweep.metric, mode=sweep.mode, keys=[y])
    png = plots.line_plot(res["table"], x, y, title=f"{sweep.name}: {y} against {x}")
    return Response(png, media_type="image/png")


# --- compare ----------------------------------------------------------------------------------


def _ids(raw: list[str]) -> list[str]:
    ids: list[str] = []
    for part in raw:
        for i in part.split(","):
            i = i.strip()
            if i and i not in ids:
                ids.append(i)
    if not ids:
        raise APIError(
            422, "invalid request", [{"field": "ids", "message": "give at least one id"}]
        )
    if len(ids) > MAX_COMPARE:
        raise APIError(
            422,
            "invalid request",
            [
                {
                    "field": "ids",
                    "message": f"{len(ids)} ids; compare at most {MAX_COMPARE} experiments at once",
                }
            ],
        )
    return ids


def aligned(
    series: dict[str, dict[str, list[tuple[int, float]]]], keys: list[str], max_points: int
) -> dict[str, Any]:
    """Per key, the union of the experiments' steps and each one's value at those steps (null
    where it has none); more steps than ``max_points`` are thinned evenly, first and last kept."""
    out: dict[str, Any] = {}
    for key in keys:
        steps = sorted({s for by_key in series.values() for s, _ in by_key.get(key, [])})
        if len(steps) > max_points:
            idx = sorted(
                {round(i * (len(steps) - 1) / (max_points - 1)) for i in range(max_points)}
            )
            steps = [steps[i] for i in idx]
        values = {}
        for eid, by_key in series.items():
            at = dict(by_key.get(key, []))
            values[eid] = [at.get(s) for s in steps]
        out[key] = {"steps": steps, "values": values}
    return out


@compare_router.get("/compare", responses={404: {}, 422: {}})
def compare(
    session: SessionDep,
    owner: OwnerDep,
    ids: Annotated[
        list[str],
        Query(description=f"experiment ids (comma-separated or repeated; at most {MAX_COMPARE})"),
    ],
    keys: Annotated[
        str | None, Query(description="metric series to align (default train_loss,val_loss)")
    ] = None,
    max_points: Annotated[int, Query(ge=2, le=10_000)] = 500,
) -> dict[str, Any]:
    """Experiments side by side: their summaries, a table of final metrics (key → id → value),
    and the per-epoch series of ``keys`` aligned on a common list of steps."""
    wanted = _ids(ids)
    rows = [_experiment(session, eid, owner) for eid in wanted]
    series_keys = _keys_param(keys) or ["train_loss", "val_loss"]
    series = {r.id: experiments_repo.metrics(session, r.id, series_keys) for r in rows}
    table_keys = metric_keys(r.summary for r in rows)
    table = {
        k: {r.id: ((r.summary or {}).get("metrics") or {}).get(k) for r in rows} for k in table_keys
    }
    return _finite(
        {
            "items": [experiment_view(r) for r in rows],
            "table": table,
            "series": aligned(series, series_keys, max_points),
        }
    )
