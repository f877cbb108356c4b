"""Artifact keys and the read side of the artifact store (checkpoints), torch-free.

Keys are relative POSIX paths like ``<experiment_id>/checkpoints/last-0003.safetensors``; they
never contain ``..`` or start with ``/``, so a stored key cannot escape the store's root. The
worker writes through the same classes (``worker/artifacts.py`` adds writing and S3).
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import BinaryIO

_SEGMENT = re.compile(r"^[A-Za-z0-9._=+-]+$")


class ArtifactKeyError(ValueError):
    """A key that is not a safe relative path inside the store."""


def validate_key(key: str) -> str:
    if not key or key.startswith("/") or "\\" in key:
        raise ArtifactKeyError(f"artifact key {key!r} must be a relative POSIX path")
    parts = PurePosixPath(key).parts
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


def open_store(location: str) -> LocalStore:
    """The store for ``REGLAB_ARTIFACTS``: a folder (``s3://`` is added by the worker side)."""
    if location.startswith("s3://"):
        raise NotImplementedError("s3:// artifact stores are not supported by this build yet")
    return LocalStore(location)
