"""Admission by estimated memory: a spec whose run would not fit in a worker is refused at
submit (422 naming the fields that drive the estimate), instead of dying of memory on a worker.

The estimate is ``regcore.memory_estimate`` (pure Python, no torch); the limit is
``REGLAB_WORKER_MEMORY_BYTES`` (``Settings.worker_memory_bytes``), by default a share of this
machine's memory: set it to the smallest worker's memory when the API runs elsewhere.
"""

from __future__ import annotations

from typing import Any

from regcore import memory_estimate
from regcore.spec import ExperimentSpec
from service.api.errors import APIError
from service.settings import Settings
from service.sweeps.plan import _blame

ERROR = "needs more memory than a worker has"


def limit(settings: Settings) -> int:
    if settings.worker_memory_bytes is not None:
        return settings.worker_memory_bytes
    return memory_estimate.worker_memory_limit({})


def admit(spec: ExperimentSpec, settings: Settings) -> None:
    """Raise a 422 when ``spec``'s estimated peak memory exceeds a worker's."""
    errors = memory_estimate.check(spec, limit(settings))
    if errors:
        raise APIError(422, ERROR, errors)


def admit_sweep(req: Any, plan: Any, settings: Settings) -> None:
    """The same for each configuration of a sweep (one report per configuration, 20 at most),
    each error pointed at the space path, factor or base field that made it."""
    cap = limit(settings)
    errors: list[dict[str, str]] = []
    seen: set[int] = set()
    for trial in plan.trials:
        if trial.config in seen:
            continue  # seeds do not change the memory
        seen.add(trial.config)
        found = memory_estimate.check(trial.spec, cap)
        errors.extend(_blame(req, plan.configs[trial.config], e) for e in found)
        if len(errors) >= 20:
            break
    if errors:
        raise APIError(422, ERROR, errors)
