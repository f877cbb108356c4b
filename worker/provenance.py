"""The worker's part of a run's ``environment``: recorded at claim, completed when it returns.

At claim the worker knows the versions, the host, itself, the device the spec will get and the
spec hash (so a run that fails before training still says where it ran); regcore's record at
the end adds the threads torch used and the dataset's sha256.
"""

from __future__ import annotations

import logging
from typing import Any

from regcore.provenance import environment
from regcore.spec import ExperimentSpec
from regcore.training.device import DeviceUnavailable, resolve_device
from service.db import environment as env_repo
from worker.context import WorkerContext
from worker.reporter import retry_db

log = logging.getLogger(__name__)


def at_claim(spec: ExperimentSpec, ctx: WorkerContext, worker_id: str) -> dict[str, Any]:
    try:
        device: Any = resolve_device(spec.train.device)
    except DeviceUnavailable:
        device = None  # the run fails on it and says why
    env = environment(spec, device=device, worker_id=worker_id)
    env["threads"] = ctx.threads or spec.train.threads  # None: regcore chooses at the start
    return env


def record(ctx: WorkerContext, experiment_id: str, worker_id: str, env: dict[str, Any]) -> bool:
    """Store ``env`` on the row (one short transaction, while ``worker_id`` holds the lease: the
    worker that claimed it, whichever process runs the job); False when it no longer does."""
    env = {**env, "worker_id": worker_id}

    def write() -> bool:
        with ctx.sessions.begin() as session:
            return env_repo.record(session, experiment_id, worker_id, env)

    return retry_db(write, ctx.settings.lease_seconds, "recording the environment")
