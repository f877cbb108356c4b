"""The body of ``PATCH /v1/experiments/{id}`` and ``PATCH /v1/sweeps/{id}``: ``name``, ``note``
and ``tags``, as a JSON merge patch (RFC 7396): a field left out is unchanged, ``note: null``
clears the note, and in ``tags`` a key set to null is removed while the others are added or
replaced. Tags are a bounded string map: at most ``MAX_TAGS`` keys of ``[A-Za-z0-9_.-]`` (up to
64 characters) with values up to 200 characters.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from regcore.spec import validate_strict
from service.api.errors import APIError, field_path

MAX_TAGS = 32
TAG_KEY = r"^[A-Za-z0-9_.\-]{1,64}$"

TagKey = Annotated[str, StringConstraints(pattern=TAG_KEY)]
TagValue = Annotated[str, StringConstraints(max_length=200)]


class Patch(BaseModel):
    """What a PATCH may change; send only the fields to change."""

    model_config = ConfigDict(extra="forbid", title="Patch")

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    note: Annotated[str, StringConstraints(max_length=10_000)] | None = None
    tags: dict[TagKey, TagValue | None] | None = Field(
        default=None,
        max_length=MAX_TAGS,
        description="keys to set; a null value removes the key",
    )


def parse_patch(data: Any) -> Patch:
    try:
        patch = validate_strict(Patch, data)
    except ValidationError as err:
        detail = [
            {"loc": field_path(tuple(p for p in e["loc"] if p != "[key]")), "msg": e["msg"]}
            for e in err.errors()
        ]
        raise APIError(422, "invalid request", detail) from None
    except ValueError as err:
        raise APIError(422, "invalid request", [{"loc": "body", "msg": str(err)}]) from None
    if "name" in patch.model_fields_set and patch.name is None:
        raise APIError(422, "invalid request", [{"loc": "name", "msg": "a name cannot be null"}])
    return patch


def apply(row: Any, patch: Patch) -> None:
    """Apply ``patch`` to an Experiment or Sweep row (the caller commits)."""
    sent = patch.model_fields_set
    if "name" in sent:
        row.name = patch.name
    if "note" in sent:
        row.note = patch.note
    if "tags" in sent:
        tags = dict(row.tags or {})
        for key, value in (patch.tags or {}).items():
            if value is None:
                tags.pop(key, None)
            else:
                tags[key] = value
        if len(tags) > MAX_TAGS:
            raise APIError(
                422,
                "invalid request",
                [{"loc": "tags", "msg": f"at most {MAX_TAGS} tags; this would make {len(tags)}"}],
            )
        row.tags = tags


PATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Patch"}}},
    }
}
