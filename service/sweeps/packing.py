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

Memory: admission judges each trial alone (``service.admission``), but a pack is one process
holding every member. ``pack_estimate`` is regcore's per-trial estimate
(``regcore.memory_estimate``, no torch) summed over the members, with what a pack holds once
counted once: the interpreter and libraries (``BASE_BYTES``) and the data (the pack builds one
dataset for all its members: ``regcore.ensemble.pack.run_pack``); each member's parameters
(with gradients, optimizer state and copies) and activations (the batched engine steps every
member at once) are summed. When ``REGLAB_WORKER_MEMORY_BYTES`` is set a pack is cut where
the next trial would take that estimate over it, and that trial opens the next pack; a trial
over it alone goes alone (admission refuses those at submit). The worker's regrouping applies
the same cap (``worker.packs.regroup``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from regcore import memory_estimate
from regcore.spec import ExperimentSpec, SpecError, parse_spec

#: on CPU the batched engine's step is cheapest per member near 16 to 32 members of a small MLP
#: (docs/engine.md). A pack holds about this many times a trial's parameters and activations:
#: with ``REGLAB_WORKER_MEMORY_BYTES`` set, ``group`` makes packs smaller where they would not
#: fit (``pack_estimate``)
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


#: ``group``'s default memory cap: the settings' ``worker_memory_bytes``
#: (REGLAB_WORKER_MEMORY_BYTES)
FROM_SETTINGS = -1


def _parts(spec: ExperimentSpec | Mapping[str, Any]) -> tuple[int, int] | None:
    """(what a pack holds once: base and data, what each member adds: parameters and
    activations) of one trial, in bytes; None for a spec that does not parse or estimate."""
    try:
        parsed = spec if isinstance(spec, ExperimentSpec) else parse_spec(dict(spec))
        est = memory_estimate.estimate(parsed)
    except (SpecError, ValueError, LookupError, TypeError):
        return None
    shared = memory_estimate.BASE_BYTES + est.parts["data"].bytes
    return shared, est.total - shared


def pack_estimate(specs: Sequence[ExperimentSpec | Mapping[str, Any]]) -> int | None:
    """The estimated peak memory of ``specs`` run as one pack, in bytes: the base and the
    data once (the largest member's: a pack's members share their data), every member's
    parameters and activations summed; None when a spec cannot be estimated."""
    parts = [_parts(s) for s in specs]
    if not parts or any(p is None for p in parts):
        return None
    known = [p for p in parts if p is not None]
    return max(shared for shared, _ in known) + sum(own for _, own in known)


def fits(specs: Sequence[ExperimentSpec | Mapping[str, Any]], memory_bytes: int | None) -> bool:
    """Whether ``specs`` may run as one pack under ``memory_bytes`` (None: no cap); a pack of
    one always fits (admission judges a trial alone), and so does one that cannot be
    estimated (its member's run says why it fails)."""
    if memory_bytes is None or len(specs) <= 1:
        return True
    total = pack_estimate(specs)
    return total is None or total <= memory_bytes


def _memory_cap(memory_bytes: int | None) -> int | None:
    if memory_bytes != FROM_SETTINGS:
        return memory_bytes
    from service.settings import get_settings

    return get_settings().worker_memory_bytes


def group(
    rows: Sequence[Launched], pack_size: int | None, memory_bytes: int | None = FROM_SETTINGS
) -> list[tuple[list[str], str]]:
    """``(experiment ids, queue)`` of each message to send, every row in exactly one, in the
    order of each group's first row; a list of one is a single run. A pack holds up to
    ``size_for(queue, pack_size)`` trials and, when ``memory_bytes`` is not None (by default
    the settings' ``worker_memory_bytes``), no more than fit in it (``pack_estimate``): the
    trial that would not fit opens the next pack."""
    cap = _memory_cap(memory_bytes)
    slots: dict[str | int, list[Launched]] = {}
    for i, row in enumerate(rows):
        key = group_key(row.queue, row.spec, row.sweep_id)
        alone = key is None or size_for(row.queue, pack_size) <= 1
        slots.setdefault(i if alone or key is None else key, []).append(row)
    messages: list[tuple[list[str], str]] = []
    for members in slots.values():
        size = size_for(members[0].queue, pack_size)
        chunk: list[Launched] = []
        shared = own = 0  # the chunk's estimate: max of the one, sum of the other
        estimating = cap is not None and size > 1 and len(members) > 1
        for row in members:
            parts = _parts(row.spec) if estimating else None
            if chunk and (
                len(chunk) >= size
                or (parts is not None and max(shared, parts[0]) + own + parts[1] > (cap or 0))
            ):
                messages.append(([r.id for r in chunk], chunk[0].queue))
                chunk, shared, own = [], 0, 0
            chunk.append(row)
            if parts is not None:
                shared, own = max(shared, parts[0]), own + parts[1]
        if chunk:
            messages.append(([r.id for r in chunk], chunk[0].queue))
    return messages
