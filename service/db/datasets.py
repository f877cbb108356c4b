"""Queries on uploaded datasets (and the ownership checks of what a spec references). Callers
own the transaction."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from service.db.models import Checkpoint, DatasetRow, Experiment, ExperimentParam

#: the spec paths that name a dataset id (experiment_params rows, see service/db/params.py)
DATASET_PATHS = ("data.id", "pretrain.source.id")
ACTIVE = ("queued", "running")


def _owned(owner: str):  # noqa: ANN202 - a SQL expression
    """Rows of ``owner``; the anonymous owner "" also has rows stored with a NULL owner."""
    if owner:
        return DatasetRow.owner == owner
    return or_(DatasetRow.owner == "", DatasetRow.owner.is_(None))


def get(session: Session, dataset_id: str, owner: str) -> DatasetRow | None:
    """The owner's dataset; another owner's is as unknown as one that never existed."""
    row = session.get(DatasetRow, dataset_id)
    if row is None or (row.owner or "") != owner:
        return None
    return row


def list_for(session: Session, owner: str) -> Sequence[DatasetRow]:
    query = select(DatasetRow).where(_owned(owner)).order_by(DatasetRow.created_at.desc())
    return session.scalars(query).all()


def create(session: Session, row: DatasetRow) -> DatasetRow:
    session.add(row)
    session.flush()
    return row


def users(session: Session, dataset_id: str) -> list[str]:
    """Ids of the queued or running experiments whose spec names ``dataset_id``."""
    query = (
        select(Experiment.id)
        .join(ExperimentParam, ExperimentParam.experiment_id == Experiment.id)
        .where(
            ExperimentParam.path.in_(DATASET_PATHS),
            ExperimentParam.str_value == dataset_id,
            Experiment.status.in_(ACTIVE),
        )
        .distinct()
    )
    return list(session.scalars(query).all())


def checkpoint_of_owner(session: Session, checkpoint_id: str, owner: str) -> Checkpoint | None:
    """The checkpoint when it belongs to one of ``owner``'s experiments, else None."""
    row = session.get(Checkpoint, checkpoint_id)
    if row is None:
        return None
    experiment = session.get(Experiment, row.experiment_id)
    if experiment is None or (experiment.owner or "") != owner:
        return None
    return row
