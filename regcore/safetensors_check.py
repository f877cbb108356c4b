"""A torch-free check that a file is a well-formed safetensors file, before anything loads it.

The safetensors format (https://github.com/huggingface/safetensors, "Format") is an 8-byte
little-endian header length N, N bytes of a JSON header, then the tensor bytes. Nothing in it
executes code, unlike a pickled ``.pt``; but a header that claims a huge length would have a
reader allocate or scan gigabytes. This check reads at most ``8 + max_header`` bytes, refuses
anything that is not exactly that layout (a pickle, a zip, a truncated file, overlapping or
out-of-bounds tensors) and never falls back to another format. Both the API (before serving a
checkpoint) and ``regcore.training.checkpoint`` (before ``load_file``) call it; it imports
neither torch nor the service.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Any, BinaryIO

#: The largest header we accept: far above what a RegLab model's few hundred tensors need.
MAX_HEADER = 16 * 1024 * 1024

DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip


class InvalidSafetensors(ValueError):
    """The bytes are not a safetensors file this project will read."""


def check_header(fh: BinaryIO, size: int, max_header: int = MAX_HEADER) -> dict[str, Any]:
    """Validate the stream ``fh`` of ``size`` bytes (positioned at 0); return the JSON header."""
    prefix = fh.read(8)
    if len(prefix) != 8:
        raise InvalidSafetensors(f"{size} bytes is too short for a safetensors header")
    (n,) = struct.unpack("<Q", prefix)
    if n > max_header:
        raise InvalidSafetensors(f"the header claims {n} bytes, more than the {max_header} allowed")
    if 8 + n > size:
        raise InvalidSafetensors(f"the header claims {n} bytes but the file has {size}")
    raw = fh.read(n)
    if len(raw) != n or not raw.startswith(b"{"):
        raise InvalidSafetensors("the header is not a JSON object (not a safetensors file)")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidSafetensors("the header is not valid UTF-8 JSON") from None
    if not isinstance(header, dict):
        raise InvalidSafetensors("the header is not a JSON object")
    _check_tensors(header, size - 8 - n)
    return header


def _check_tensors(header: dict[str, Any], buffer: int) -> None:
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise InvalidSafetensors("__metadata__ must map strings to strings")
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or info.get("dtype") not in DTYPE_BYTES:
            raise InvalidSafetensors(f"tensor {name!r} has no known dtype")
        shape, offsets = info.get("shape"), info.get("data_offsets")
        if not (isinstance(shape, list) and all(_is_count(d) for d in shape)):
            raise InvalidSafetensors(f"tensor {name!r} has an invalid shape")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))):
            raise InvalidSafetensors(f"tensor {name!r} has invalid data_offsets")
        begin, end = offsets
        if not begin <= end <= buffer:
            raise InvalidSafetensors(f"tensor {name!r} lies outside the file")
        if end - begin != math.prod(shape) * DTYPE_BYTES[info["dtype"]]:
            raise InvalidSafetensors(f"tensor {name!r}: its shape and byte range disagree")
        spans.append((begin, end))
    # The tensors tile the data buffer exactly, as the reference reader demands.
    position = 0
    for begin, end in sorted(spans):
        if begin != position:
            raise InvalidSafetensors("tensor byte ranges overlap or leave gaps")
        position = end
    if position != buffer:
        raise InvalidSafetensors("the file has bytes after its last tensor")


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def validate_safetensors(path: str | os.PathLike[str], max_header: int = MAX_HEADER) -> dict:
    """Raise ``InvalidSafetensors`` unless ``path`` is a well-formed safetensors file."""
    path = Path(path)
    if not path.is_file():  # a FIFO or a device would block or never end
        raise InvalidSafetensors(f"{path.name} is not a regular file")
    try:
        with path.open("rb") as fh:
            return check_header(fh, os.fstat(fh.fileno()).st_size, max_header)
    except OSError as exc:
        raise InvalidSafetensors(f"cannot read {path.name}: {exc.strerror or exc}") from None
