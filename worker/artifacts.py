"""The writable artifact store: checkpoints go here before their row is recorded.

Every write lands under a temporary name first and is renamed into place (``os.replace`` on a
folder; an S3 upload is atomic per object), so a reader never sees half a file. Keys are checked
by ``service.artifacts.validate_key`` (relative, no ``..``) on both sides.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from service.artifacts import LocalStore as ReadOnlyLocalStore
from service.artifacts import S3ReadStore, parse_s3_location


class ArtifactStore(Protocol):
    def put(self, local_path: Path, key: str) -> None: ...
    def get(self, key: str, local_path: Path) -> None: ...
    def open(self, key: str) -> BinaryIO: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...


def _download_to(local_path: Path, write: Any) -> None:
    local_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = local_path.with_name(f".{local_path.name}.{uuid.uuid4().hex}.part")
    try:
        write(tmp)
        os.replace(tmp, local_path)
    finally:
        tmp.unlink(missing_ok=True)


class LocalStore(ReadOnlyLocalStore):
    """Artifacts as files under a folder (a shared volume when API and workers are apart)."""

    def put(self, local_path: Path, key: str) -> None:
        dest = self.path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
        try:
            shutil.copyfile(local_path, tmp)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def get(self, key: str, local_path: Path) -> None:
        src = self.path(key)
        if not src.is_file():
            raise FileNotFoundError(f"artifact {key!r} is not in the store at {self.root}")
        _download_to(local_path, lambda tmp: shutil.copyfile(src, tmp))

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)


class S3Store(S3ReadStore):
    """Artifacts in an S3-compatible bucket under a prefix (an upload is atomic per object)."""

    def put(self, local_path: Path, key: str) -> None:
        self.client.upload_file(str(local_path), self.bucket, self._key(key))

    def get(self, key: str, local_path: Path) -> None:
        s3_key = self._key(key)
        _download_to(
            local_path, lambda tmp: self.client.download_file(self.bucket, s3_key, str(tmp))
        )

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))


def open_store(location: str) -> ArtifactStore:
    """``REGLAB_ARTIFACTS``: ``s3://bucket/prefix`` or a folder."""
    if location.startswith("s3://"):
        # Checked like any key: s3://bucket/../x is refused, not normalised.
        return S3Store(*parse_s3_location(location))
    return LocalStore(location)
