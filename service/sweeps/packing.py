"""Which of a sweep's trials go to a worker as one pack (one message, one job).

The rows are a sweep's trials just launched, or trials the reconciler sends again (a killed
worker's, back in the queue: its pack's members rerun together). The service cannot ask regcore
whether specs batch (``regcore.ensemble.pack.pack_key`` needs torch), so it groups by what every
pack shares and a spec says plainly: the sweep, the queue, the seed (the data is built from it:
a sweep's ``seeds`` change the data, so packs never cross seeds), the data, the model and the
epoch count. Trials with equal ``group_key`` go out together, in order, in messages of up to
``size_for(queue, pack_size)`` trials. The worker (``worker.packs``) has the last word: it runs
regcore's ``pack_key`` over a message's trials, trains those that share a key as one pack and
sends the others on as single runs (or smaller packs).

``REGLAB_PACK_SIZE`` (``Settings.pack_size``): None means ``CPU_PACK_SIZE`` on the ``cpu`` queue
and ``GPU_PACK_SIZE`` on ``gpu``; 1 turns packing off.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

#: on CPU the batched engine's step is cheapest per member near 16 to 32 members of a small MLP
#: (docs/engine.md). A pack holds about this many times a trial's memory, which admission (per
#: trial) does not check yet: a pack that outgrows its worker fails every member out of memory
CPU_PACK_SIZE = 16
#: a GPU's batched step stays compute-light far beyond that (docs/engine.md, 256 members)
GPU_PACK_SIZE = 64


class Launched(Protocol):
    """An experiment row to send (``service.db.models.Experiment``)."""

    id: str
    queue: str
    spec: dict[str, Any]
    sweep_id: str | None


def size_for(queue: str, pack_size: int | None) -> int:
    """The largest pack on ``queue``: ``pack_size`` when set, else the queue's default."""
    if pack_size is not None:
        return pack_size
    return GPU_PACK_SIZE if queue == "gpu" else CPU_PACK_SIZE


def group_key(queue: str, spec: Mapping[str, Any], sweep_id: str | None) -> str | None:
    """Trials with equal keys may form one pack; None for a spec that never packs (an
    ensemble is already batched within itself) and for a run outside a sweep."""
    ensemble = spec.get("ensemble") or {}
    if sweep_id is None or int(ensemble.get("size", 1) or 1) > 1:
        return None
    train = spec.get("train") or {}
    shared = {
        "sweep": sweep_id,
        "queue": queue,
        "seed": spec.get("seed"),
        "data": spec.get("data"),
        "model": spec.get("model"),
        "epochs": train.get("epochs"),
        "device": train.get("device"),
    }
    return json.dumps(shared, sort_keys=True)


def group(rows: Sequence[Launched], pack_size: int | None) -> list[tuple[list[str], str]]:
    """``(experiment ids, queue)`` of each message to send, every row in exactly one, in the
    order of each group's first row; a list of one is a single run."""
    slots: dict[str | int, list[Launched]] = {}
    for i, row in enumerate(rows):
        key = group_key(row.queue, row.spec, row.sweep_id)
        alone = key is None or size_for(row.queue, pack_size) <= 1
        slots.setdefault(i if alone or key is None else key, []).append(row)
    messages: list[tuple[list[str], str]] = []
    for members in slots.values():
        size = size_for(members[0].queue, pack_size)
        for i in range(0, len(members), size):
            chunk = members[i : i + size]
            messages.append(([r.id for r in chunk], chunk[0].queue))
    return messages
