"""A run's ``environment`` (what ran: ``regcore.provenance``), stored by the worker that runs it.

Written at claim (versions, host, worker, device, spec hash) and again when the run returns
(with the threads torch used and the dataset's sha256), each time only while the writer holds
the lease. The caller owns the transaction.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, update
from sqlalchemy.orm import Session

from service.db.models import Experiment


def record(session: Session, experiment_id: str, worker_id: str, env: dict[str, Any]) -> bool:
    """Store ``env``; False, writing nothing, when the lease is no longer ``worker_id``'s."""
    result = session.execute(
        update(Experiment)
        .where(
            Experiment.id == experiment_id,
            Experiment.status == "running",
            Experiment.lease_owner == worker_id,
        )
        .values(environment=env)
        .execution_options(synchronize_session=False)
    )
    return cast(CursorResult[Any], result).rowcount == 1
