"""Where a tie reference (``tie.reference``) is read from.

Over HTTP a reference is the id of a checkpoint of one of the submitter's experiments; the worker
checks the owner, fetches it to ``<cache>/checkpoints/<id>.safetensors`` (``worker/datasets.py``)
and regcore reads it there. ``reglab run`` also takes a local file path.
"""

from __future__ import annotations

from pathlib import Path

from regcore.spec import RESOURCE_ID


def cached_checkpoint(cache_dir: Path, checkpoint_id: str) -> Path:
    return Path(cache_dir) / "checkpoints" / f"{checkpoint_id}.safetensors"


def reference_file(reference: str, cache_dir: Path | None) -> Path:
    """The local file of ``reference``: a fetched checkpoint by id, else a local path."""
    if RESOURCE_ID.match(reference):
        if cache_dir is None or not cached_checkpoint(cache_dir, reference).is_file():
            raise FileNotFoundError(
                f"tie.reference: checkpoint {reference} has not been fetched to this machine"
            )
        return cached_checkpoint(cache_dir, reference)
    return Path(reference)
