"""``/v1/regularizers``, generated from the spec models (no drift); ``/v1/datasets`` is in
``datasets.py``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from regcore.catalog import catalog_entries
from service.api import schemas

router = APIRouter(prefix="/v1", tags=["catalog"])


@router.get("/regularizers", response_model=schemas.RegularizerList)
def list_regularizers() -> dict[str, Any]:
    """Every regularizer: name, one-line description, parameters' JSON schema, defaults."""
    return {"items": catalog_entries()}
