"""A spec that came over HTTP: paths are refused, dataset and checkpoint ids must be the
submitter's own, and the model is checked against the uploaded data's shapes.

Unknown ids and other owners' ids get the same answer, so a request learns nothing of what
others have. The worker checks the owner again before it fetches anything (``worker/datasets.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from regcore.spec import RESOURCE_ID, DataInfo, ExperimentSpec, SpecError, parse_spec
from service.db import datasets as repo
from service.db.models import DatasetRow


def info_of(row: DatasetRow) -> DataInfo:
    return DataInfo(row.task, row.kind, tuple(row.shape), row.classes, row.test_rows)


def dataset_sections(data: Any) -> list[tuple[str, dict[str, Any]]]:
    """``(field path, section)`` of each ``"name": "upload"`` data section of a raw spec."""
    if not isinstance(data, dict):
        return []
    pre = data.get("pretrain")
    pretrain: dict[str, Any] = pre if isinstance(pre, dict) else {}
    out = []
    for where, section in (("data", data.get("data")), ("pretrain.source", pretrain.get("source"))):
        if isinstance(section, dict) and section.get("name") == "upload":
            out.append((where, section))
    return out


def tie_references(data: Any) -> list[tuple[str, str]]:
    """``(field path, checkpoint id)`` of each tie regularizer's reference."""
    regs = data.get("regularizers") if isinstance(data, dict) else None
    out = []
    for i, reg in enumerate(regs if isinstance(regs, list) else []):
        if isinstance(reg, dict) and reg.get("name") == "tie":
            ref = reg.get("reference")
            if isinstance(ref, str) and RESOURCE_ID.match(ref):
                out.append((f"regularizers[{i}].reference", ref))
    return out


def parse_http_spec(data: Any, session: Session, owner: str) -> ExperimentSpec:
    """``parse_spec`` as for a spec from HTTP, with the owner's datasets' shapes; raises
    ``SpecError`` naming ``data.id`` or ``regularizers[i].reference`` for an id not theirs."""
    infos: dict[str, DataInfo] = {}
    errors: list[dict[str, str]] = []
    for where, section in dataset_sections(data):
        ident = section.get("id")
        if not isinstance(ident, str) or not RESOURCE_ID.match(ident):
            continue  # the spec's own checks name the field
        row = repo.get(session, ident, owner)
        if row is None:
            errors.append(
                {"field": f"{where}.id", "message": f"no dataset {ident} (GET /v1/datasets)"}
            )
        else:
            infos[ident] = info_of(row)
    for where, ref in tie_references(data):
        if repo.checkpoint_of_owner(session, ref, owner) is None:
            errors.append(
                {
                    "field": where,
                    "message": f"no checkpoint {ref} among your experiments' checkpoints",
                }
            )
    spec = parse_spec(data, datasets=infos)  # its own errors first: they say more
    if errors:
        raise SpecError(errors)
    return spec


def check_specs(specs: Iterable[tuple[str, ExperimentSpec]], session: Session, owner: str) -> None:
    """Each ``(label, spec)`` (a sweep's configurations) as ``parse_http_spec`` checks one;
    raises ``SpecError`` whose messages start with the label of the spec at fault."""
    seen: set[str] = set()
    for label, spec in specs:
        digest = spec.spec_hash()
        if digest in seen:
            continue
        seen.add(digest)
        try:
            parse_http_spec(spec.model_dump(mode="json"), session, owner)
        except SpecError as err:
            raise SpecError(
                [{"field": e["field"], "message": f"{label}: {e['message']}"} for e in err.errors]
            ) from None
