"""``/v1/experiments``: submit, list, read, tag, cancel, metrics and checkpoints.

Routes stay thin: bodies are read in ``service.api.body``/``patch``, query parameters parsed in
``service.api.query``, rows shaped in ``service.api.views`` (models in ``schemas``).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from celery import Celery
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import TypeAdapter
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from regcore.spec import ExperimentSpec, SpecError
from service import admission
from service.api import schemas
from service.api.auth import ANONYMOUS, OwnerDep
from service.api.body import read_json_body, refuse_simple_bodies
from service.api.deps import CeleryDep, SessionDep, SettingsDep, StoreDep
from service.api.errors import APIError, not_found
from service.api.patch import PATCH_BODY, apply, parse_patch
from service.api.query import ID, filter_and_sort, invalid, keys_param, shown, text_param
from service.api.ratelimit import submit_limit
from service.api.views import checkpoint_view, experiment_brief, experiment_view, finite
from service.artifacts import (
    ArtifactKeyError,
    ArtifactStoreError,
    InvalidSafetensors,
    check_servable,
)
from service.datasets.resolve import parse_http_spec
from service.db import experiments as repo
from service.db import search
from service.db.models import STATUSES, Checkpoint, Experiment
from service.queue import enqueue
from service.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/experiments", tags=["experiments"])

__all__ = ["ANONYMOUS", "router"]

Status = schemas.Status
assert set(Status.__args__) == set(STATUSES)  # type: ignore[attr-defined]


def _queue_for(spec: ExperimentSpec, settings: Settings) -> str:
    device = spec.train.device
    if device == "cpu":
        return "cpu"
    if device.startswith("cuda"):
        return "gpu"
    return settings.auto_queue


# --- routes -----------------------------------------------------------------------------------

_SPEC_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ExperimentSpec"}}
        },
    }
}


@router.post(
    "",
    status_code=202,
    response_model=schemas.Experiment,
    openapi_extra=_SPEC_BODY,
    dependencies=[Depends(submit_limit)],
    responses={
        413: {},
        415: {},
        409: {"description": "Idempotency-Key reused for another spec"},
        429: {"description": "too many submits for this key; retry after Retry-After seconds"},
    },
)
async def submit_experiment(
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    celery: CeleryDep,
    owner: OwnerDep,
    idempotency_key: Annotated[
        str | None, Header(max_length=200, pattern=r"^[\x20-\x7e]+$")
    ] = None,
) -> dict[str, Any]:
    """Queue an experiment. A repeated ``Idempotency-Key`` returns the original experiment."""
    data = await read_json_body(request, settings.max_spec_bytes)
    try:
        # over HTTP: no paths; dataset and checkpoint ids the owner's (reads the database)
        spec = await run_in_threadpool(parse_http_spec, data, session, owner)
    except SpecError as err:
        raise APIError(422, "invalid spec", err.errors) from None
    admission.admit(spec, settings)  # 422 when its estimated memory exceeds a worker's
    # The database and the broker are blocking clients: keep them off the event loop.
    return await run_in_threadpool(
        _create_and_enqueue, spec, idempotency_key, owner, response, session, settings, celery
    )


def _create_and_enqueue(
    spec: ExperimentSpec,
    idempotency_key: str | None,
    owner: str,
    response: Response,
    session: Session,
    settings: Settings,
    celery: Celery,
) -> dict[str, Any]:
    spec_json = spec.model_dump(mode="json")
    spec_hash = spec.spec_hash()

    def replay(row: Experiment) -> dict[str, Any]:
        if row.spec_hash != spec_hash:
            raise APIError(
                409,
                "idempotency key reused",
                f"Idempotency-Key {idempotency_key!r} was used for experiment {row.id} "
                "with a different spec",
            )
        response.headers["Location"] = f"/v1/experiments/{row.id}"
        response.headers["Idempotent-Replayed"] = "true"
        return experiment_view(row)

    if idempotency_key is not None:
        existing = repo.get_by_idempotency_key(session, owner, idempotency_key)
        if existing is not None:
            return replay(existing)
    try:
        # The INSERT's flush is where a concurrent request with the same key collides (the
        # unique constraint); a savepoint lets this request roll back just that and replay.
        with session.begin_nested():
            row = repo.create(
                session,
                name=spec.name,
                spec=spec_json,
                spec_hash=spec_hash,
                queue=_queue_for(spec, settings),
                total_epochs=spec.train.last_point,  # train.steps: points are steps
                max_attempts=settings.max_attempts,
                owner=owner,
                idempotency_key=idempotency_key,
            )
        session.commit()
    except IntegrityError:
        session.rollback()
        if idempotency_key is None:
            raise
        # The winner has committed by now: PostgreSQL made this INSERT wait for it, SQLite
        # serialises writers.
        existing = repo.get_by_idempotency_key(session, owner, idempotency_key)
        if existing is None:
            raise
        return replay(existing)
    # Enqueue only after the commit, so the worker always finds the row.
    if enqueue(celery, row.id, row.queue):
        repo.mark_enqueued(session, row.id)
        session.commit()
    response.headers["Location"] = f"/v1/experiments/{row.id}"
    return experiment_view(row)


@router.get("", response_model=schemas.ExperimentPage)
def list_experiments(
    session: SessionDep,
    owner: OwnerDep,
    status: Status | None = None,
    name: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
    filter: Annotated[
        str | None,
        Query(
            max_length=500,
            description="e.g. test_acc>0.8 and (params.model.name=mlp or tags.team=vision)",
        ),
    ] = None,
    sort: Annotated[str | None, Query(max_length=101, description="e.g. -test_acc")] = None,
    view: Annotated[
        Literal["brief", "full"],
        Query(description="brief: id, name, status, times, headline metrics, tags; full: all"),
    ] = "brief",
) -> dict[str, Any]:
    """Newest first (or by ``sort``); pass ``next_cursor`` back as ``cursor`` for the next page.
    ``filter`` and ``sort`` follow the grammar in ``service.sweeps.filters`` (metrics compare
    latest values, ``params.<path>`` what was run, ``tags.<key>`` the tags)."""
    text_param(name, "name")
    node, order = filter_and_sort(filter, sort)
    try:
        page = repo.list_page(
            session, status=status, name=name, owner=owner, limit=limit, cursor=cursor,
            where=search.where(node, order), sort=order, lean=view != "full",
        )  # fmt: skip
    except repo.CursorError as err:
        raise invalid("cursor", str(err)) from None
    shape = experiment_view if view == "full" else experiment_brief
    return {"items": [shape(r) for r in page.items], "next_cursor": page.next_cursor}


def _experiment(session: SessionDep, experiment_id: str, owner: str) -> Experiment:
    """The owner's experiment; another owner's is as unknown as one that never existed."""
    row = repo.get(session, experiment_id) if ID.match(experiment_id) else None
    if row is None or (row.owner or ANONYMOUS) != owner:
        raise not_found("experiment", shown(experiment_id))
    return row


@router.get("/{experiment_id}", response_model=schemas.Experiment)
def get_experiment(experiment_id: str, session: SessionDep, owner: OwnerDep) -> dict[str, Any]:
    return experiment_view(_experiment(session, experiment_id, owner))


@router.patch(
    "/{experiment_id}",
    response_model=schemas.Experiment,
    openapi_extra=PATCH_BODY,
    responses={413: {}, 415: {}},
)
async def update_experiment(
    experiment_id: str, request: Request, session: SessionDep, owner: OwnerDep
) -> dict[str, Any]:
    """Change ``name``, ``note`` or ``tags`` (a JSON merge patch: a tag set to null is removed)."""
    patch = parse_patch(await read_json_body(request, 65536, "the patch"))

    def update() -> dict[str, Any]:
        row = _experiment(session, experiment_id, owner)
        apply(row, patch)
        session.commit()
        return experiment_view(row)

    return await run_in_threadpool(update)


@router.post(
    "/{experiment_id}/cancel", response_model=schemas.Experiment, responses={409: {}, 415: {}}
)
def cancel_experiment(
    experiment_id: str, request: Request, session: SessionDep, owner: OwnerDep
) -> dict[str, Any]:
    """A queued experiment ends ``cancelled`` now; a running one stops within an epoch."""
    refuse_simple_bodies(request)
    _experiment(session, experiment_id, owner)
    row = repo.request_cancel(session, experiment_id)
    session.commit()
    assert row is not None
    if row.status in ("succeeded", "failed"):
        raise APIError(409, "conflict", f"experiment {experiment_id} already ended {row.status}")
    return experiment_view(row)


_PLAIN_JSON = TypeAdapter(dict[str, Any])


@router.get("/{experiment_id}/metrics", response_model=schemas.MetricSeries)
def get_metrics(
    experiment_id: str,
    session: SessionDep,
    owner: OwnerDep,
    keys: Annotated[str | None, Query(description="comma-separated metric keys")] = None,
    max_points: Annotated[
        int | None,
        Query(
            ge=2,
            le=100_000,
            description="at most this many points per key, downsampled by "
            "Largest-Triangle-Three-Buckets (first and last kept, peaks survive); "
            "absent: every point",
        ),
    ] = None,
    since_step: Annotated[
        int | None, Query(ge=0, le=2**31 - 1, description="only steps after this one (polling)")
    ] = None,
) -> Response:
    """Per-epoch series. A key the run has never recorded is a 404 that lists the keys it has."""
    _experiment(session, experiment_id, owner)
    wanted = keys_param(keys) or None
    if wanted:
        known = repo.metric_keys(session, experiment_id)
        unknown = [k for k in wanted if k not in known]
        if unknown:
            has = ", ".join(known) if known else "none yet"
            raise APIError(
                404,
                "unknown metric",
                f"experiment {experiment_id} has no metric {', '.join(unknown)}; it has: {has}",
            )
    series = repo.metrics(session, experiment_id, wanted, max_points, since_step)
    body = {
        "series": {
            key: [{"step": s, "value": finite(v)} for s, v in points]
            for key, points in series.items()
        }
    }
    # built in MetricSeries' shape and written as it is: FastAPI would validate 10,000 points
    # into models first, several times the cost of the query (the dashboard's run page waits)
    return Response(_PLAIN_JSON.dump_json(body), media_type="application/json")


@router.get("/{experiment_id}/checkpoints", response_model=schemas.CheckpointList)
def list_checkpoints(experiment_id: str, session: SessionDep, owner: OwnerDep) -> dict[str, Any]:
    _experiment(session, experiment_id, owner)
    return {"items": [checkpoint_view(c) for c in repo.checkpoints(session, experiment_id)]}


@router.get(
    "/{experiment_id}/checkpoints/{checkpoint_id}/file",
    response_class=Response,
    operation_id="download_checkpoint",
    responses={
        200: {"content": {"application/octet-stream": {}}},
        409: {"description": "the stored file is not a valid safetensors file"},
    },
)
def download_checkpoint(
    experiment_id: str, checkpoint_id: str, session: SessionDep, store: StoreDep, owner: OwnerDep
) -> Response:
    """The checkpoint's safetensors weights."""
    _experiment(session, experiment_id, owner)
    ckpt = (
        repo.checkpoint(session, experiment_id, checkpoint_id) if ID.match(checkpoint_id) else None
    )
    if ckpt is None:
        raise not_found("checkpoint", f"{shown(checkpoint_id)} of experiment {experiment_id}")
    try:
        return _serve_checkpoint(store, ckpt, experiment_id, checkpoint_id)
    except ArtifactStoreError as err:
        # The store (S3) is unreachable or erring: say so and when to retry, not a bare 500.
        log.error("checkpoint %s: the artifact store failed: %s", ckpt.id, err)
        raise APIError(
            503,
            "store unavailable",
            f"the artifact store could not be read for checkpoint {checkpoint_id}; retry shortly",
            headers={"Retry-After": "10"},
        ) from None


def _serve_checkpoint(
    store: Any, ckpt: Checkpoint, experiment_id: str, checkpoint_id: str
) -> Response:
    try:
        present = store.exists(ckpt.uri)
    except (ArtifactKeyError, OSError):
        log.error("checkpoint %s has an unsafe or unreadable key %r", ckpt.id, ckpt.uri[:300])
        present = False
    missing = APIError(404, "not found", f"the file of checkpoint {checkpoint_id} is missing")
    if not present:
        raise missing
    try:
        check_servable(store, ckpt.uri)
    except InvalidSafetensors as err:
        # Only safetensors ever leaves the store: never a pickle someone slipped in.
        log.error("checkpoint %s (%r) is not servable: %s", ckpt.id, ckpt.uri, err)
        raise APIError(
            409, "invalid checkpoint", f"the file of checkpoint {checkpoint_id} is not safetensors"
        ) from None
    except FileNotFoundError:
        raise missing from None  # deleted between the two calls
    filename = f"{experiment_id}-{ckpt.kind}-{ckpt.epoch:04d}.safetensors"
    local = store.local_path(ckpt.uri)
    if local is not None:
        return FileResponse(local, media_type="application/octet-stream", filename=filename)
    # Opened before the response starts, so a store failure is still a 503 and not a cut body.
    try:
        body = store.open(ckpt.uri)
    except FileNotFoundError:
        raise missing from None

    def chunks():
        with body as fh:
            while block := fh.read(1 << 20):
                yield block

    return StreamingResponse(
        chunks(),
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
