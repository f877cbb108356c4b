"""Before a run: fetch what its spec names by id (uploaded datasets, tie reference checkpoints)
into the worker's cache, after checking again that each belongs to the experiment's owner.

The API checked ownership at submit; the worker checks again because a spec can also arrive by
other paths (sweeps, rows written by an older version). Files are verified against the SHA-256
the database recorded, cached by id under ``REGLAB_CACHE_DIR`` (``datasets/<id>.npz``,
``checkpoints/<id>.safetensors``) and reused while they still match. A refusal is one sentence
that names the field and the id, never a path or anything the file holds.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from regcore.data.references import cached_checkpoint
from regcore.data.upload import cached_path
from regcore.spec import RESOURCE_ID, ExperimentSpec
from service.datasets.store import dataset_key
from service.db import datasets as repo
from service.db.models import Experiment

log = logging.getLogger(__name__)


class InputRefused(Exception):
    """An input the run may not use (not the owner's, or not matching its recorded hash)."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(store: Any, key: str, dest: Path, sha256: str, what: str) -> None:
    """``key`` to ``dest`` unless ``dest`` already holds a file with ``sha256``."""
    if dest.is_file() and _sha256(dest) == sha256:
        return
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{uuid.uuid4().hex}.part")
    try:
        store.get(key, tmp)
        if _sha256(tmp) != sha256:
            raise InputRefused(f"{what}: the stored file does not match its recorded SHA-256")
        os.replace(tmp, dest)
    except FileNotFoundError:
        raise InputRefused(f"{what}: the stored file is missing") from None
    finally:
        tmp.unlink(missing_ok=True)


def _wanted(spec: ExperimentSpec) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    datasets = [("data.id", spec.data.id)] if spec.data.name == "upload" and spec.data.id else []
    if spec.pretrain is not None and spec.pretrain.source.name == "upload":
        datasets.append(("pretrain.source.id", spec.pretrain.source.id or ""))
    refs = [
        (f"regularizers[{i}].reference", str(reg.reference))  # type: ignore[attr-defined]
        for i, reg in enumerate(spec.regularizers)
        if reg.name == "tie" and getattr(reg, "reference", None) is not None
    ]
    return datasets, refs


def prepare_inputs(ctx: Any, experiment_id: str, spec: ExperimentSpec) -> str | None:
    """Fetch the run's inputs; the reason it may not run, or None when all is in place."""
    datasets, refs = _wanted(spec)
    if not datasets and not refs:
        return None
    cache = Path(ctx.settings.cache_dir)
    fetches: list[tuple[str, Path, str, str]] = []
    with ctx.sessions() as session:
        experiment = session.get(Experiment, experiment_id)
        owner = (experiment.owner or "") if experiment is not None else ""
        for field, ident in datasets:
            row = repo.get(session, ident, owner)
            if row is None:
                return f"{field}: no dataset {ident} of this experiment's owner"
            fetches.append((dataset_key(ident), cached_path(cache, ident), row.sha256, field))
        for field, ref in refs:
            if not RESOURCE_ID.match(ref):
                return f"{field}: a reference is a checkpoint id; paths are for reglab run only"
            ckpt = repo.checkpoint_of_owner(session, ref, owner)
            if ckpt is None:
                return f"{field}: no checkpoint {ref} among the owner's experiments' checkpoints"
            fetches.append((ckpt.uri, cached_checkpoint(cache, ref), ckpt.sha256, field))
    try:
        for key, dest, sha, field in fetches:
            dest.parent.mkdir(parents=True, exist_ok=True)
            _fetch(ctx.store, key, dest, sha, field)
    except InputRefused as err:
        return str(err)
    log.info("experiment %s: %d input(s) fetched and verified", experiment_id, len(fetches))
    return None
