"""Artifact keys and the read side of the artifact store (checkpoints), torch-free.

Keys are relative POSIX paths like ``<experiment_id>/checkpoints/last-0003.safetensors``; they
never contain ``..`` or start with ``/``, so a stored key cannot escape the store's root. The
worker writes through the same classes (``worker/artifacts.py`` adds writing).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, BinaryIO

from regcore.safetensors_check import (
    MAX_HEADER,
    InvalidSafetensors,
    check_header,
    validate_safetensors,
)

__all__ = [
    "ArtifactKeyError",
    "ArtifactStoreError",
    "InvalidSafetensors",
    "LocalStore",
    "S3ReadStore",
    "check_servable",
    "open_store",
    "parse_s3_location",
    "validate_key",
    "validate_safetensors",
]

_SEGMENT = re.compile(r"^[A-Za-z0-9._=+-]+$")


class ArtifactKeyError(ValueError):
    """A key that is not a safe relative path inside the store."""


class ArtifactStoreError(RuntimeError):
    """The store could not answer (unreachable, throttled, denied, a server error): anything but
    "no such object" or a bad key. Worth retrying later; the file may well be there."""


#: S3's key limit and the usual NAME_MAX: longer keys fail at the filesystem, not here.
MAX_KEY, MAX_SEGMENT = 1024, 255


def validate_key(key: str) -> str:
    if not key or key.startswith("/") or "\\" in key:
        raise ArtifactKeyError(f"artifact key {key!r} must be a relative POSIX path")
    if len(key) > MAX_KEY or any(len(p) > MAX_SEGMENT for p in key.split("/")):
        raise ArtifactKeyError(
            f"artifact key {key[:80]!r}... is too long ({MAX_KEY} characters, "
            f"{MAX_SEGMENT} a segment at most)"
        )
    # Split by hand: PurePosixPath would quietly drop "." and empty segments ("a/./b", "a//b").
    parts = key.split("/")
    for part in parts:
        if part in (".", "..") or not _SEGMENT.match(part):
            raise ArtifactKeyError(
                f"artifact key {key!r} has an unsafe segment {part!r}; "
                "segments use letters, digits and ._=+- only, and never '.' or '..'"
            )
    return "/".join(parts)


class LocalStore:
    """Artifacts as files under a root folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def size(self, key: str) -> int:
        return self.path(key).stat().st_size

    def open(self, key: str) -> BinaryIO:
        return self.path(key).open("rb")

    def local_path(self, key: str) -> Path | None:
        """A filesystem path the key can be served from directly, when there is one."""
        return self.path(key)


class S3ReadStore:
    """Artifacts in an S3-compatible bucket under a prefix, read side; credentials and endpoint
    come from the usual AWS_* variables (boto3 is imported only when this store is used)."""

    def __init__(self, bucket: str, prefix: str = "", client: Any = None):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))
        return self._client

    def _key(self, key: str) -> str:
        key = validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, method: str, key: str) -> Any:
        """``client.<method>(Bucket, Key)``; a missing object is ``FileNotFoundError`` and any
        other failure (botocore's ClientError or connection errors, caught without importing
        botocore here) ``ArtifactStoreError``. A bad key raises ``ArtifactKeyError`` first."""
        s3_key = self._key(key)
        try:
            return getattr(self.client, method)(Bucket=self.bucket, Key=s3_key)
        except Exception as err:
            code = getattr(err, "response", {}).get("Error", {}).get("Code")
            if code in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(f"s3://{self.bucket}/{s3_key}") from err
            raise ArtifactStoreError(
                f"S3 {method} of s3://{self.bucket}/{s3_key} failed: {type(err).__name__}"
            ) from err

    def open(self, key: str) -> BinaryIO:
        return self._call("get_object", key)["Body"]

    def size(self, key: str) -> int:
        return int(self._call("head_object", key)["ContentLength"])

    def exists(self, key: str) -> bool:
        try:
            self._call("head_object", key)
        except FileNotFoundError:
            return False
        return True

    def local_path(self, key: str) -> Path | None:
        return None


def parse_s3_location(location: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` as (bucket, prefix); the prefix obeys the key rules (no ``..``)."""
    if not location.startswith("s3://"):
        raise ArtifactKeyError(f"artifact location {location!r} is not s3://bucket/prefix")
    bucket, _, prefix = location[len("s3://") :].partition("/")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket) or ".." in bucket:
        raise ArtifactKeyError(
            f"artifact location {location!r} names no bucket (or an invalid one; s3://bucket/prefix)"
        )
    prefix = prefix.strip("/")
    return bucket, validate_key(prefix) if prefix else ""


def check_servable(store: LocalStore | S3ReadStore, key: str, max_header: int = MAX_HEADER) -> None:
    """Raise ``InvalidSafetensors`` unless ``key`` is a ``.safetensors`` file whose header
    checks out: the API serves weights only in the format that cannot carry code."""
    if not validate_key(key).endswith(".safetensors"):
        raise InvalidSafetensors(f"artifact {key!r} is not a .safetensors file")
    local = store.local_path(key)
    if local is not None:
        validate_safetensors(local, max_header)
        return
    with store.open(key) as fh:
        check_header(fh, store.size(key), max_header)


def open_store(location: str) -> LocalStore | S3ReadStore:
    """The store for ``REGLAB_ARTIFACTS``, read side: a folder or ``s3://bucket/prefix``."""
    if location.startswith("s3://"):
        # checked like any key: s3://bucket/../x is refused, not normalised
        return S3ReadStore(*parse_s3_location(location))
    if location.startswith("file:") or "\x00" in location:
        raise ArtifactKeyError(f"artifact location {location!r} must be a folder or s3://...")
    return LocalStore(location)
