"""The regularizer catalog as data, generated from the spec models (no torch here).

``reglab catalog`` prints it and ``GET /v1/regularizers`` serves it, so neither can drift from
what a spec accepts.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from regcore.spec import regularizer_spec_classes


def _plain(default: Any) -> Any:
    """A default as JSON holds it: a nested spec (consistency's ``views``) as its fields."""
    return default.model_dump(mode="json") if isinstance(default, BaseModel) else default


def catalog_entries() -> list[dict[str, Any]]:
    entries = []
    for cls in regularizer_spec_classes():
        schema = cls.model_json_schema()
        params = {k: v for k, v in schema.get("properties", {}).items() if k != "name"}
        defaults = {
            k: _plain(f.get_default(call_default_factory=True))
            for k, f in cls.model_fields.items()
            if k != "name"
        }
        entries.append(
            {
                "name": cls.model_fields["name"].default,
                "description": (cls.__doc__ or "").strip().splitlines()[0],
                "parameters": {
                    "type": "object",
                    "properties": params,
                    "additionalProperties": False,
                    **({"$defs": schema["$defs"]} if "$defs" in schema else {}),
                },
                "defaults": defaults,
            }
        )
    return entries
