"""Writing and deleting dataset files in the artifact store (a folder or S3), from the API.

The API's store is the read side (``service.artifacts``); datasets are the one thing the API
writes, so the two operations it needs live here. A local write lands under a temporary name and
is renamed into place; an S3 ``put_object`` is atomic per object.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from service.artifacts import LocalStore, S3ReadStore


def dataset_key(dataset_id: str) -> str:
    return f"datasets/{dataset_id}.npz"


def put_bytes(store: Any, key: str, data: bytes) -> None:
    if isinstance(store, S3ReadStore):
        store.client.put_object(Bucket=store.bucket, Key=store._key(key), Body=data)
        return
    if isinstance(store, LocalStore):
        dest = store.path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return
    store.put_bytes(key, data)  # a store of another kind (tests) brings its own


def delete(store: Any, key: str) -> None:
    if isinstance(store, S3ReadStore):
        store.client.delete_object(Bucket=store.bucket, Key=store._key(key))
    elif isinstance(store, LocalStore):
        store.path(key).unlink(missing_ok=True)
    else:
        store.delete(key)
