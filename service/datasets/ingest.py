"""``POST /v1/datasets``: check an uploaded file, store its canonical form, record the row.

Nothing is stored unless every check passes (``regcore.datafiles``). The id comes from the owner
and the SHA-256 of the canonical file, so the same upload twice is the same dataset.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from regcore.datafiles import canonical_npz, read_data_file, sniff_format
from service.datasets.store import dataset_key, put_bytes
from service.db import datasets as repo
from service.db.models import DatasetRow, utcnow


def dataset_id(owner: str, sha256: str) -> str:
    return hashlib.sha256(f"{owner}\0{sha256}".encode()).hexdigest()[:32]


def ingest(
    session: Session,
    store: Any,
    owner: str,
    content: bytes,
    *,
    filename: str,
    name: str | None,
    task: str,
    target: str | None,
    kind: str | None,
    max_bytes: int,
) -> DatasetRow:
    """Check, store and record; raises ``regcore.datafiles.DataFileError`` for a bad file."""
    fmt = sniff_format(content[:8], filename)
    arrays = read_data_file(
        content, filename=filename, task=task, target=target, kind=kind, max_bytes=max_bytes
    )
    blob = canonical_npz(arrays)
    sha = hashlib.sha256(blob).hexdigest()
    ident = dataset_id(owner, sha)
    existing = repo.get(session, ident, owner)
    if existing is not None:
        return existing
    put_bytes(store, dataset_key(ident), blob)  # before the row: a row always has its file
    info = arrays.info()
    row = DatasetRow(
        id=ident,
        owner=owner,
        name=(name or filename or ident)[:200],
        task=info.task,
        kind=info.kind,
        shape=list(info.shape),
        classes=info.classes,
        test_rows=info.n_test,
        format=fmt,
        bytes=len(blob),
        sha256=sha,
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            repo.create(session, row)
        session.commit()
    except IntegrityError:  # the same upload, concurrently: the other request's row stands
        session.rollback()
        found = repo.get(session, ident, owner)
        if found is None:
            raise
        return found
    return row
