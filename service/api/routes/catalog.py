"""``/v1/regularizers`` and ``/v1/datasets``, generated from the spec models (no drift)."""

from __future__ import annotations

from typing import Any, get_args

from fastapi import APIRouter

from regcore.catalog import catalog_entries
from regcore.spec import DATASET_SIZES, GENERATED_DEFAULTS, DatasetName, DataSpec

router = APIRouter(prefix="/v1", tags=["catalog"])

# toy1d is the one regression dataset (regcore.spec refuses classification-only regularizers on it).
_REGRESSION = {"toy1d"}


@router.get("/regularizers")
def regularizers() -> dict[str, Any]:
    """Every regularizer: name, one-line description, parameters' JSON schema, defaults."""
    return {"items": catalog_entries()}


@router.get("/datasets")
def datasets() -> dict[str, Any]:
    """The built-in datasets, their size and task, and the ``data`` parameters' JSON schema."""
    items = []
    for name in get_args(DatasetName):
        generated = DATASET_SIZES[name] is None
        defaults = GENERATED_DEFAULTS.get(name)
        items.append(
            {
                "name": name,
                "task": "regression" if name in _REGRESSION else "classification",
                "size": DATASET_SIZES[name],
                "generated": generated,
                "default_splits": (
                    dict(zip(("n_train", "n_val", "n_test"), defaults, strict=True))
                    if defaults
                    else None
                ),
            }
        )
    return {"items": items, "parameters": DataSpec.model_json_schema()}
