"""``/v1/sweeps`` (grid, random and factorial sweeps with replicates, early stopping, results
and plots) and ``/v1/compare`` (experiments side by side).

How a sweep's experiments are launched within ``max_concurrent`` is told in
``service.db.sweeps``; the request's fields in ``service.sweeps.plan.SweepRequest``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from celery import Celery
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from regcore.spec import SpecError, validate_strict
from service import admission
from service.api import schemas
from service.api.auth import OwnerDep
from service.api.body import read_json_body, refuse_simple_bodies
from service.api.deps import CeleryDep, SessionDep, SettingsDep
from service.api.errors import APIError, not_found
from service.api.patch import PATCH_BODY, apply, parse_patch
from service.api.query import ID, invalid, keys_param, shown
from service.api.ratelimit import submit_limit
from service.api.routes.experiments import _queue_for
from service.api.views import sweep_brief, sweep_view
from service.datasets.resolve import check_specs
from service.db import experiments as experiments_repo
from service.db import sweeps as repo
from service.db.models import Sweep
from service.db.paging import CursorError
from service.db.sweep_pages import sweeps_page
from service.queue import enqueue
from service.settings import Settings
from service.sweeps import packing
from service.sweeps.plan import PlanError, SweepRequest, expand
from service.sweeps.results import results
from service.sweeps.stats import metric_keys

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"])

#: a sweep body carries a base spec plus the space: allow a few specs' worth.
SWEEP_BODY_FACTOR = 4


def _field(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in ("median", "asha", "int", "list[int]"):  # union tags are not fields
            out += f".{part}" if out else str(part)
    return out or "body"


def _sweep(session: Session, sweep_id: str, owner: str) -> Sweep:
    row = repo.get(session, sweep_id, owner) if ID.match(sweep_id) else None
    if row is None:
        raise not_found("sweep", shown(sweep_id))
    return row


# --- routes -----------------------------------------------------------------------------------


@router.post(
    "",
    status_code=202,
    response_model=schemas.Sweep,
    dependencies=[Depends(submit_limit)],
    responses={413: {}, 415: {}, 422: {}, 429: {"description": "too many submits for this key"}},
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
    try:  # dataset and checkpoint ids the owner's, shapes that fit (as for one experiment)
        labelled = [(f"configuration {t.config}", t.spec) for t in plan.trials]
        await run_in_threadpool(check_specs, labelled, session, owner)
    except SpecError as err:
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
    messages = packing.group(repo.launch(session, sweep), settings.pack_size)
    session.commit()
    for ids, queue in messages:  # after the commit, so the worker finds the rows
        if enqueue(celery, ids, queue):
            for eid in ids:
                experiments_repo.mark_enqueued(session, eid)
    session.commit()
    response.headers["Location"] = f"/v1/sweeps/{sweep.id}"
    return sweep_view(session, sweep)


@router.get("", response_model=schemas.SweepPage)
def list_sweeps(
    session: SessionDep,
    owner: OwnerDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> dict[str, Any]:
    """Newest first: id, name, status, method, counts and tags (read one sweep for results);
    pass ``next_cursor`` back as ``cursor`` for the next page."""
    try:
        page = sweeps_page(session, owner, limit, cursor)
    except CursorError as err:
        raise invalid("cursor", str(err)) from None
    return {"items": [sweep_brief(session, s) for s in page.items], "next_cursor": page.next_cursor}


@router.get("/{sweep_id}", response_model=schemas.Sweep)
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
    return sweep_view(session, _sweep(session, sweep_id, owner), keys_param(keys))


@router.patch(
    "/{sweep_id}",
    response_model=schemas.Sweep,
    openapi_extra=PATCH_BODY,
    responses={413: {}, 415: {}},
)
async def update_sweep(
    sweep_id: str, request: Request, session: SessionDep, owner: OwnerDep
) -> dict[str, Any]:
    """Change ``name``, ``note`` or ``tags`` (a JSON merge patch: a tag set to null is removed)."""
    patch = parse_patch(await read_json_body(request, 65536, "the patch"))

    def update() -> dict[str, Any]:
        sweep = _sweep(session, sweep_id, owner)
        apply(sweep, patch)
        session.commit()
        return sweep_view(session, sweep)

    return await run_in_threadpool(update)


@router.post("/{sweep_id}/cancel", response_model=schemas.Sweep, responses={415: {}})
def cancel_sweep(
    sweep_id: str, request: Request, session: SessionDep, owner: OwnerDep
) -> dict[str, Any]:
    """No more experiments are launched; queued ones end cancelled, running ones stop."""
    refuse_simple_bodies(request)
    sweep = _sweep(session, sweep_id, owner)
    repo.cancel(session, sweep)
    session.commit()
    return sweep_view(session, sweep)


@router.get(
    "/{sweep_id}/plot",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, 422: {}},
)
def plot_sweep(
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
