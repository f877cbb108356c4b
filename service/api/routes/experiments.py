"""``/v1/experiments``: submit, read, list, cancel, metrics and checkpoints."""

from __future__ import annotations

import json
import logging
import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from celery import Celery
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from regcore.spec import ExperimentSpec, SpecError
from service import admission
from service.api.auth import ANONYMOUS, OwnerDep
from service.api.deps import CeleryDep, SessionDep, SettingsDep, StoreDep
from service.api.errors import APIError, not_found
from service.artifacts import (
    ArtifactKeyError,
    ArtifactStoreError,
    InvalidSafetensors,
    check_servable,
)
from service.datasets.resolve import parse_http_spec
from service.db import experiments as repo
from service.db import latest
from service.db.models import STATUSES, Checkpoint, Experiment
from service.queue import enqueue
from service.settings import Settings
from service.sweeps.filters import FilterError, parse_filter, parse_sort

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/experiments", tags=["experiments"])

__all__ = ["ANONYMOUS", "router"]
#: ids are uuid4 hex; anything else is unknown without asking the database (a NUL byte or a
#: 4 KB "id" would otherwise reach it, and PostgreSQL refuses NUL in text).
_ID = re.compile(r"^[0-9a-f]{32}$")
#: JSON numbers a database column or a 64-bit field can hold; larger ones are refused, not cut.
_INT_LIMIT = 2**63
#: a metric key, as the filter grammar spells it (``service.sweeps.filters.KEY``).
_KEYS = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
#: metric keys one request may name (each is an IN item and a series in the answer).
MAX_KEYS = 50

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]
assert set(Status.__args__) == set(STATUSES)  # type: ignore[attr-defined]


# --- JSON views -------------------------------------------------------------------------------


def _finite(value: Any) -> Any:
    """JSON has no NaN or Infinity: a diverged metric is reported as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def experiment_view(row: Experiment) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "status": row.status,
        "spec": row.spec,
        "created_at": _time(row.created_at),
        "started_at": _time(row.started_at),
        "finished_at": _time(row.finished_at),
        "summary": _finite(row.summary),
        "error": row.error,
        "attempts": row.attempts,
        "cancel_requested": row.cancel_requested,
        "progress": {"epoch": row.last_epoch, "epochs": row.total_epochs},
    }


def checkpoint_view(row: Checkpoint) -> dict[str, Any]:
    return {
        "id": row.id,
        "experiment_id": row.experiment_id,
        "epoch": row.epoch,
        "kind": row.kind,
        "size": row.size,
        "sha256": row.sha256,
        "created_at": _time(row.created_at),
        "url": f"/v1/experiments/{row.experiment_id}/checkpoints/{row.id}/file",
    }


# --- reading the body ourselves: size, content type, strict JSON ------------------------------


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _reject_constant(token: str) -> float:
    raise ValueError(f"{token} is not a number JSON allows; use a finite value")


def _finite_float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise ValueError(f"{token} is out of range for a floating-point number")
    return value


async def read_json_body(request: Request, max_bytes: int) -> Any:
    if not _is_json(request.headers.get("content-type")):
        raise APIError(
            415,
            "unsupported media type",
            f"expected Content-Type application/json, got {request.headers.get('content-type')!r}",
        )
    too_large = APIError(413, "payload too large", f"the spec must be at most {max_bytes} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise too_large
    try:
        data = json.loads(bytes(body), parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        message = str(exc) if str(exc) else type(exc).__name__
        raise APIError(
            422, "invalid JSON", [{"field": "body", "message": f"not valid JSON: {message}"}]
        ) from None
    try:
        problem = _unstorable(data, "")
    except RecursionError:
        problem = {"field": "body", "message": "nested too deeply"}
    if problem is not None:
        raise APIError(422, "invalid spec", [problem])
    return data


def _unstorable(value: Any, path: str) -> dict[str, str] | None:
    """The first value no database column or training run can hold: a NUL byte or an unpaired
    surrogate in a string (PostgreSQL and UTF-8 refuse them), or an integer beyond 64 bits."""
    here = path or "body"
    if isinstance(value, str):
        return None if _storable_text(value) else {"field": here, "message": _BAD_TEXT}
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _INT_LIMIT:
        return {"field": here, "message": "integer out of range (|n| < 2**63)"}
    if isinstance(value, dict):
        children = [(f"{path}.{k}" if path else k, k, v) for k, v in value.items()]
    elif isinstance(value, list):
        children = [(f"{path}[{i}]", "", v) for i, v in enumerate(value)]
    else:
        return None
    for where, key, item in children:
        if not _storable_text(key):
            return {"field": here, "message": _BAD_TEXT}
        found = _unstorable(item, where)
        if found is not None:
            return found
    return None


_BAD_TEXT = "text must not contain NUL bytes or unpaired surrogates"


def _storable_text(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text_param(value: str | None, field: str) -> str | None:
    if value is not None and not _storable_text(value):
        raise APIError(422, "invalid request", [{"field": field, "message": _BAD_TEXT}])
    return value


def _keys_param(keys: str | None) -> list[str] | None:
    if keys is None:
        return None
    wanted = [k.strip() for k in keys.split(",") if k.strip()]
    bad = [k for k in wanted if not _KEYS.match(k)]
    if bad or len(wanted) > MAX_KEYS:
        raise APIError(
            422,
            "invalid request",
            [
                {
                    "field": "keys",
                    "message": f"up to {MAX_KEYS} comma-separated metric keys ([a-z0-9_])",
                }
            ],
        )
    return wanted


def _refuse_simple_bodies(request: Request) -> None:
    """A body-less POST still must not accept a form or text body: a cross-site "simple
    request" (no preflight) could otherwise act with the user's network position."""
    content_type = request.headers.get("content-type")
    if content_type is not None and not _is_json(content_type):
        raise APIError(
            415,
            "unsupported media type",
            f"send no body or application/json, not {content_type!r}",
        )


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
    openapi_extra=_SPEC_BODY,
    responses={413: {}, 415: {}, 409: {"description": "Idempotency-Key reused for another spec"}},
)
async def submit(
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
                total_epochs=spec.train.epochs,
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


@router.get("")
def list_experiments(
    session: SessionDep,
    owner: OwnerDep,
    status: Status | None = None,
    name: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
    filter: Annotated[
        str | None, Query(max_length=500, description="e.g. test_acc>0.8 and status=succeeded")
    ] = None,
    sort: Annotated[str | None, Query(max_length=101, description="e.g. -test_acc")] = None,
) -> dict[str, Any]:
    """Newest first; pass ``next_cursor`` back as ``cursor`` for the next page. ``filter`` and
    ``sort`` follow the grammar in ``service.sweeps.filters`` (metrics compare latest values)."""
    _text_param(name, "name")
    try:
        clauses, order = parse_filter(filter), parse_sort(sort)
    except FilterError as err:
        detail = [{"field": err.param, "message": err.message}]
        raise APIError(422, "invalid request", detail) from None
    try:
        page = repo.list_page(
            session, status=status, name=name, owner=owner, limit=limit, cursor=cursor,
            where=latest.where(clauses), order_by=latest.order_by(order) if order else None,
        )  # fmt: skip
    except repo.CursorError as err:
        raise APIError(422, "invalid request", [{"field": "cursor", "message": str(err)}]) from None
    return {"items": [experiment_view(r) for r in page.items], "next_cursor": page.next_cursor}


def _experiment(session: SessionDep, experiment_id: str, owner: str) -> Experiment:
    """The owner's experiment; another owner's is as unknown as one that never existed."""
    row = repo.get(session, experiment_id) if _ID.match(experiment_id) else None
    if row is None or (row.owner or ANONYMOUS) != owner:
        raise not_found("experiment", _shown(experiment_id))
    return row


def _shown(ident: str) -> str:
    return ident if len(ident) <= 64 else ident[:64] + "..."


@router.get("/{experiment_id}")
def get_experiment(experiment_id: str, session: SessionDep, owner: OwnerDep) -> dict[str, Any]:
    return experiment_view(_experiment(session, experiment_id, owner))


@router.post("/{experiment_id}/cancel", responses={409: {}, 415: {}})
def cancel(
    experiment_id: str, request: Request, session: SessionDep, owner: OwnerDep
) -> dict[str, Any]:
    """A queued experiment ends ``cancelled`` now; a running one stops within an epoch."""
    _refuse_simple_bodies(request)
    _experiment(session, experiment_id, owner)
    row = repo.request_cancel(session, experiment_id)
    session.commit()
    assert row is not None
    if row.status in ("succeeded", "failed"):
        raise APIError(409, "conflict", f"experiment {experiment_id} already ended {row.status}")
    return experiment_view(row)


@router.get("/{experiment_id}/metrics")
def metrics(
    experiment_id: str,
    session: SessionDep,
    owner: OwnerDep,
    keys: Annotated[str | None, Query(description="comma-separated metric keys")] = None,
    max_points: Annotated[int | None, Query(ge=2, le=100_000)] = None,
) -> dict[str, Any]:
    _experiment(session, experiment_id, owner)
    wanted = _keys_param(keys) or None
    series = repo.metrics(session, experiment_id, wanted, max_points)
    return {
        "series": {
            key: [{"step": s, "value": _finite(v)} for s, v in points]
            for key, points in series.items()
        }
    }


@router.get("/{experiment_id}/checkpoints")
def list_checkpoints(experiment_id: str, session: SessionDep, owner: OwnerDep) -> dict[str, Any]:
    _experiment(session, experiment_id, owner)
    return {"items": [checkpoint_view(c) for c in repo.checkpoints(session, experiment_id)]}


@router.get(
    "/{experiment_id}/checkpoints/{checkpoint_id}/file",
    response_class=Response,
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
        repo.checkpoint(session, experiment_id, checkpoint_id) if _ID.match(checkpoint_id) else None
    )
    if ckpt is None:
        raise not_found("checkpoint", f"{_shown(checkpoint_id)} of experiment {experiment_id}")
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
