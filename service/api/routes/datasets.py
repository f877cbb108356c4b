"""``/v1/datasets``: the built-in datasets and the caller's uploads (issue 11).

``POST`` takes a multipart form (``file``, ``name``, ``task``, ``target``, ``kind``), checks the
file (``regcore.datafiles``: every failure a 422 naming the column, array or row) and stores it
by id; ``GET`` lists or shows, ``DELETE`` removes (409 while a queued or running experiment uses
it). Uploads are owner-scoped as experiments are: another owner's dataset is a 404.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from regcore.datafiles import DataFileError
from regcore.spec import DATASET_SIZES, GENERATED_DEFAULTS, RESOURCE_ID, DatasetName, DataSpec
from service.api.auth import OwnerDep
from service.api.deps import SessionDep, SettingsDep, StoreDep
from service.api.errors import APIError, not_found
from service.artifacts import ArtifactStoreError
from service.datasets.ingest import ingest
from service.datasets.store import dataset_key, delete
from service.db import datasets as repo
from service.db.models import DatasetRow

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

# toy1d is the one regression dataset (regcore.spec refuses classification-only regularizers on it).
_REGRESSION = {"toy1d"}
#: multipart overhead allowed beyond the file itself before the body is refused unread
_FORM_SLACK = 64 * 1024


class BuiltinItem(BaseModel):
    name: str
    source: Literal["builtin"] = "builtin"
    task: Literal["classification", "regression"]
    size: int | None
    generated: bool
    default_splits: dict[str, int] | None


class UploadedDataset(BaseModel):
    id: str
    name: str
    source: Literal["upload"] = "upload"
    task: Literal["classification", "regression"]
    kind: Literal["table", "signal", "image"]
    shape: list[int] = Field(description="x's shape, rows first")
    classes: int | None = Field(description="K for classification; null for regression")
    test_rows: int = Field(description="rows of the file's own test arrays (0: carved)")
    format: Literal["npz", "csv", "parquet"]
    bytes: int = Field(description="size of the stored canonical .npz")
    sha256: str = Field(description="SHA-256 of the stored canonical .npz")
    created_at: str


class DatasetList(BaseModel):
    items: list[BuiltinItem | UploadedDataset]
    parameters: dict[str, Any] = Field(description="JSON schema of the spec's data section")


def builtin_items() -> list[dict[str, Any]]:
    items = []
    for name in get_args(DatasetName):
        defaults = GENERATED_DEFAULTS.get(name)
        items.append(
            {
                "name": name,
                "source": "builtin",
                "task": "regression" if name in _REGRESSION else "classification",
                "size": DATASET_SIZES[name],
                "generated": DATASET_SIZES[name] is None,
                "default_splits": (
                    dict(zip(("n_train", "n_val", "n_test"), defaults, strict=True))
                    if defaults
                    else None
                ),
            }
        )
    return items


def dataset_view(row: DatasetRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "source": "upload",
        "task": row.task,
        "kind": row.kind,
        "shape": list(row.shape),
        "classes": row.classes,
        "test_rows": row.test_rows,
        "format": row.format,
        "bytes": row.bytes,
        "sha256": row.sha256,
        "created_at": row.created_at.isoformat(),
    }


def _field_error(err: DataFileError) -> APIError:
    loc = (
        err.field
        if err.field in ("file", "task", "target", "kind", "name")
        else f"file.{err.field}"
    )
    return APIError(422, "invalid dataset", [{"field": loc, "message": err.message}])


@router.get("", response_model=DatasetList)
def list_datasets(session: SessionDep, owner: OwnerDep) -> dict[str, Any]:
    """The built-in datasets (size, task, default splits), then the caller's uploads (newest
    first), and the ``data`` parameters' JSON schema."""
    uploads = [dataset_view(r) for r in repo.list_for(session, owner)]
    return {"items": builtin_items() + uploads, "parameters": DataSpec.model_json_schema()}


@router.post("", status_code=201, response_model=UploadedDataset, responses={422: {}, 503: {}})
async def upload_dataset(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    store: StoreDep,
    owner: OwnerDep,
    file: Annotated[UploadFile, File(description=".npz (x, y, x_test, y_test), .csv or .parquet")],
    name: Annotated[str | None, Form(max_length=200)] = None,
    task: Annotated[Literal["classification", "regression"], Form()] = "classification",
    target: Annotated[
        str | None, Form(max_length=200, description="a table's label column")
    ] = None,
    kind: Annotated[
        Literal["table", "signal", "image"] | None,
        Form(description="npz only: signal for (N, C, L) rows (3-D x is read as images)"),
    ] = None,
) -> dict[str, Any]:
    """Check and store a dataset; the same content twice gives the same id."""
    limit = settings.max_dataset_bytes
    too_big = APIError(
        422, "invalid dataset", [{"field": "file", "message": f"over the limit of {limit} bytes"}]
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + _FORM_SLACK:
        raise too_big
    content = await file.read(limit + 1)
    if len(content) > limit:
        raise too_big
    try:
        row = await run_in_threadpool(
            ingest,
            session,
            store,
            owner,
            content,
            filename=file.filename or "",
            name=name,
            task=task,
            target=target,
            kind=kind,
            max_bytes=limit,
        )
    except DataFileError as err:
        raise _field_error(err) from None
    except ArtifactStoreError as err:
        log.error("dataset upload: the artifact store failed: %s", err)
        raise APIError(
            503, "store unavailable", "the artifact store could not be written; retry shortly",
            headers={"Retry-After": "10"},
        ) from None  # fmt: skip
    return dataset_view(row)


def _dataset(session: SessionDep, dataset_id: str, owner: str) -> DatasetRow:
    row = repo.get(session, dataset_id, owner) if RESOURCE_ID.match(dataset_id) else None
    if row is None:
        raise not_found("dataset", dataset_id[:64])
    return row


@router.get("/{dataset_id}", response_model=UploadedDataset)
def get_dataset(dataset_id: str, session: SessionDep, owner: OwnerDep) -> dict[str, Any]:
    return dataset_view(_dataset(session, dataset_id, owner))


@router.delete("/{dataset_id}", status_code=204, responses={409: {}})
def delete_dataset(
    dataset_id: str, session: SessionDep, store: StoreDep, owner: OwnerDep
) -> Response:
    """Remove the dataset and its file; 409 while a queued or running experiment uses it."""
    row = _dataset(session, dataset_id, owner)
    using = repo.users(session, dataset_id)
    if using:
        raise APIError(
            409,
            "dataset in use",
            f"dataset {dataset_id} is used by {len(using)} queued or running experiment(s) "
            f"({', '.join(using[:5])}); cancel them or wait for them to end",
        )
    session.delete(row)
    session.commit()
    delete(store, dataset_key(dataset_id))
    return Response(status_code=204)
