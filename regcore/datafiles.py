"""Read and check a dataset file (``.npz``, ``.csv``, ``.parquet``) into canonical arrays.

The API (``POST /v1/datasets``) and ``reglab run`` with ``"data": {"name": "file"}`` read files
through here, so both refuse the same files for the same reasons. numpy and pyarrow only, no
torch (the API imports this module). Every failure is a ``DataFileError`` that names the column,
array or row at fault.

* ``.npz``: arrays ``x`` and ``y``, optionally ``x_test`` and ``y_test``. Members are read one by
  one: their ``.npy`` headers first (an object dtype, i.e. a pickle, is refused before any of its
  data is read), then decompressed in chunks with a running count, so a small member that would
  expand past the size limit is refused without expanding it.
* ``.csv`` and ``.parquet``: one row per example; ``target`` names the label column, every other
  column is a feature.

The canonical form (``canonical_npz``) is a deterministic ``.npz``: x float32, y int64 (labels) or
float32 (regression), fixed zip timestamps, plus a ``meta`` string array (task, kind) so the file
describes itself. Its SHA-256 is the same for the same content, whoever wrote it.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from regcore.spec import DataInfo, SpecError

#: default cap on a dataset file, and on what its arrays expand to (REGLAB_MAX_DATASET_BYTES)
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
ARRAYS = ("x", "y", "x_test", "y_test")
TASKS = ("classification", "regression")
KINDS = ("table", "signal", "image")
#: dimensions of x per kind: (N, F); (N, L) or (N, C, L); (N, H, W) or (N, C, H, W)
NDIMS = {"table": (2,), "signal": (2, 3), "image": (3, 4)}
_CHUNK = 1 << 20


class DataFileError(ValueError):
    """A file refused at upload: ``field`` names the column, array or form field at fault."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


@dataclass
class DataArrays:
    """A checked dataset: arrays and what they are."""

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    task: str
    kind: str
    classes: int | None

    def info(self) -> DataInfo:
        n_test = 0 if self.x_test is None else int(self.x_test.shape[0])
        return DataInfo(self.task, self.kind, tuple(self.x.shape), self.classes, n_test)


def sniff_format(head: bytes, filename: str = "") -> str:
    """npz, parquet or csv, by the file's first bytes (the name only breaks a tie)."""
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "npz"
    if head.startswith(b"PAR1"):
        return "parquet"
    if filename.lower().endswith((".npz", ".parquet", ".pq")):
        raise DataFileError("file", f"{filename} is not a valid {filename.rsplit('.', 1)[-1]} file")
    return "csv"


def read_data_file(
    source: bytes | Path,
    *,
    filename: str = "",
    task: str = "classification",
    target: str | None = None,
    kind: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> DataArrays:
    """Parse and check a dataset file; raises ``DataFileError`` naming what is wrong."""
    if task not in TASKS:
        raise DataFileError("task", f"must be one of {list(TASKS)}, not {task!r}")
    if kind is not None and kind not in KINDS:
        raise DataFileError("kind", f"must be one of {list(KINDS)}, not {kind!r}")
    if isinstance(source, Path):
        size = source.stat().st_size
        if size > max_bytes:
            raise DataFileError("file", f"{size} bytes is over the limit of {max_bytes} bytes")
        source = source.read_bytes()
    if len(source) > max_bytes:
        raise DataFileError("file", f"{len(source)} bytes is over the limit of {max_bytes} bytes")
    if not source:
        raise DataFileError("file", "the file is empty")
    fmt = sniff_format(source[:8], filename)
    if fmt == "npz":
        if target is not None:
            raise DataFileError("target", "applies to tables (.csv, .parquet), not .npz arrays")
        arrays = _read_npz(source, max_bytes)
        x, y = arrays["x"], arrays["y"]
        xt, yt = arrays.get("x_test"), arrays.get("y_test")
        kind = kind or {2: "signal", 3: "image", 4: "image"}.get(x.ndim, "signal")
    else:
        if kind not in (None, "table"):
            raise DataFileError("kind", f"a {fmt} file holds a table, not {kind} data")
        x, y = _read_table(source, fmt, target)
        xt = yt = None
        kind = "table"
    return check_arrays(x, y, xt, yt, task=task, kind=kind)


# --- npz --------------------------------------------------------------------------------------


def _read_npz(data: bytes, max_bytes: int) -> dict[str, np.ndarray]:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise DataFileError("file", f"not a readable .npz (zip) file: {err}") from None
    with zf:
        members = zf.infolist()
        names = [m.filename.removesuffix(".npy") for m in members]
        unknown = [n for n in names if n not in ARRAYS]
        if unknown:
            raise DataFileError(
                unknown[0][:100], f"unknown array; an .npz holds {list(ARRAYS)} only"
            )
        # the headers' sizes first: a zip bomb is refused before anything is expanded
        declared = sum(m.file_size for m in members)
        if declared > max_bytes:
            raise DataFileError(
                "file", f"its arrays expand to {declared} bytes, over the limit of {max_bytes}"
            )
        out: dict[str, np.ndarray] = {}
        budget = max_bytes
        for member, name in zip(members, names, strict=True):
            try:
                with zf.open(member) as fh:
                    out[name] = _read_npy(_Capped(fh, budget, name), name, budget)  # type: ignore[arg-type]
            except (zipfile.BadZipFile, EOFError, OSError, ValueError, zipfile.LargeZipFile) as err:
                if isinstance(err, DataFileError):
                    raise
                raise DataFileError(name, f"unreadable array: {err}") from None
            budget -= out[name].nbytes
    for need in ("x", "y"):
        if need not in out:
            raise DataFileError(need, "missing; an .npz needs arrays x and y")
    if ("x_test" in out) != ("y_test" in out):
        have, lack = ("x_test", "y_test") if "x_test" in out else ("y_test", "x_test")
        raise DataFileError(lack, f"missing: {have} needs {lack} beside it")
    return out


class _Capped(io.RawIOBase):
    """A reader that refuses to yield more than ``cap`` bytes (a member whose header lies)."""

    def __init__(self, fh: BinaryIO, cap: int, name: str):
        self.fh, self.left, self.name, self.cap = fh, cap, name, cap

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        want = min(len(buf), _CHUNK)
        block = self.fh.read(want)
        if len(block) > self.left:
            raise DataFileError(self.name, f"expands past the limit of {self.cap} bytes")
        self.left -= len(block)
        buf[: len(block)] = block
        return len(block)


def _read_npy(fh: Any, name: str, budget: int) -> np.ndarray:
    reader = io.BufferedReader(fh, _CHUNK)
    version = np.lib.format.read_magic(reader)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(reader)
    elif version in ((2, 0), (3, 0)):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(reader)
    else:
        raise DataFileError(name, f"unsupported .npy version {version}")
    if dtype.hasobject:
        raise DataFileError(
            name, "holds Python objects (a pickle); it is never loaded: save numeric arrays"
        )
    if dtype.kind not in "biuf":
        raise DataFileError(name, f"dtype {dtype} is not numeric (bool, int or float)")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > budget:
        raise DataFileError(name, f"{nbytes} bytes of data, over the limit of {budget} bytes")
    raw = _read_exactly(reader, nbytes, name)
    arr = np.frombuffer(raw, dtype=dtype)
    return arr.reshape(tuple(shape), order="F" if fortran else "C")


def _read_exactly(reader: Any, n: int, name: str) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        block = reader.read(min(_CHUNK, n - len(buf)))
        if not block:
            raise DataFileError(name, f"truncated: {len(buf)} of {n} bytes of data")
        buf += block
    return bytes(buf)


# --- tables -----------------------------------------------------------------------------------


def _read_table(data: bytes, fmt: str, target: str | None) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow as pa

    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(io.BytesIO(data))
        else:
            import pyarrow.csv as pcsv

            table = pcsv.read_csv(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError) as err:
        raise DataFileError("file", f"not a readable {fmt} file: {str(err)[:300]}") from None
    columns = table.column_names
    if target is None:
        found = [c for c in ("target", "y", "label") if c in columns]
        if not found:
            raise DataFileError(
                "target", f"name the label column; the columns are {_columns(columns)}"
            )
        target = found[0]
    if target not in columns:
        raise DataFileError("target", f"no column {target!r}; the columns are {_columns(columns)}")
    if len(columns) < 2:
        raise DataFileError("file", "a table needs at least one feature column beside the target")
    if len(set(columns)) != len(columns):
        dup = next(c for c in columns if columns.count(c) > 1)
        raise DataFileError(f"column {dup}", "appears twice")
    values = {c: _numeric_column(table.column(c), c) for c in columns}
    x = np.stack([values[c] for c in columns if c != target], axis=1)
    return x, values[target]


def _columns(columns: list[str]) -> str:
    shown = ", ".join(repr(c) for c in columns[:20])
    return shown + (f" and {len(columns) - 20} more" if len(columns) > 20 else "")


def _numeric_column(col: Any, name: str) -> np.ndarray:
    import pyarrow as pa

    where = f"column {name}"
    if col.null_count:
        row = next(i for i, v in enumerate(col.is_null().to_pylist()) if v)
        raise DataFileError(where, f"row {row} is empty or NaN (a missing value)")
    t = col.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
        sample = next((v for v in col.to_pylist() if v is not None), None)
        raise DataFileError(where, f"is not numeric ({t}, e.g. {str(sample)[:40]!r})")
    values = col.to_numpy().astype(np.float64 if not pa.types.is_integer(t) else np.int64)
    _finite(values, where)
    return values


# --- the checks every format shares -----------------------------------------------------------


def check_arrays(
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray | None,
    y_test: np.ndarray | None,
    *,
    task: str,
    kind: str,
) -> DataArrays:
    """Shapes agree, values are finite numbers, labels are 0..K-1 with every class present often
    enough for the default splits (test carved from x unless x_test is given, then validation)."""
    if x.ndim not in NDIMS[kind]:
        raise DataFileError(
            "x",
            f"shape {x.shape}: {kind} data is (N, F)"
            if kind == "table"
            else f"shape {x.shape}: {kind} data is "
            + ("(N, L) or (N, C, L)" if kind == "signal" else "(N, H, W) or (N, C, H, W)"),
        )
    if min(x.shape) < 1:
        raise DataFileError("x", f"shape {x.shape} holds no data")
    _finite(x, "x")
    y = _labels(y, "y", x.shape[0], task)
    if x_test is not None and y_test is not None:
        if x_test.shape[1:] != x.shape[1:]:
            raise DataFileError(
                "x_test", f"rows of shape {x_test.shape[1:]}; x's rows are {x.shape[1:]}"
            )
        _finite(x_test, "x_test")
        y_test = _labels(y_test, "y_test", x_test.shape[0], task)
    classes = None
    if task == "classification":
        classes = _check_classes(y, y_test)
    dtype = np.int64 if task == "classification" else np.float32
    return DataArrays(
        np.ascontiguousarray(x, dtype=np.float32),
        np.ascontiguousarray(y, dtype=dtype),
        None if x_test is None else np.ascontiguousarray(x_test, dtype=np.float32),
        None if y_test is None else np.ascontiguousarray(y_test, dtype=dtype),
        task,
        kind,
        classes,
    )


def _finite(a: np.ndarray, name: str) -> None:
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise DataFileError(name, f"row {row} holds a value that is not finite (NaN or inf)")
        if np.abs(a).max(initial=0) > np.finfo(np.float32).max:
            row = int(np.argwhere(np.abs(a) > np.finfo(np.float32).max)[0][0])
            raise DataFileError(name, f"row {row} holds a value beyond float32's range")


def _labels(y: np.ndarray, name: str, rows: int, task: str) -> np.ndarray:
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1:
        raise DataFileError(name, f"shape {y.shape}: labels are one per row, (N,)")
    x_name = "x" if name == "y" else "x_test"
    if y.shape[0] != rows:
        raise DataFileError(name, f"{y.shape[0]} labels for the {rows} rows of {x_name}")
    _finite(y, name)
    if task == "regression":
        return y.astype(np.float64)
    if y.dtype.kind == "f":
        frac = np.nonzero(y != np.round(y))[0]
        if len(frac):
            row = int(frac[0])
            raise DataFileError(
                name,
                f"row {row}: label {float(y[row]):g} is not an integer (classification labels "
                "are 0..K-1; use task=regression for real-valued targets)",
            )
    y = y.astype(np.int64)
    neg = np.nonzero(y < 0)[0]
    if len(neg):
        raise DataFileError(name, f"row {int(neg[0])}: label {int(y[neg[0]])} is negative (0..K-1)")
    return y


#: examples each class needs: one for each split (train, validation, carved test)
MIN_PER_CLASS = 3


def _check_classes(y: np.ndarray, y_test: np.ndarray | None) -> int:
    k = int(max(y.max(), -1 if y_test is None else y_test.max())) + 1
    if k > 10_000:
        raise DataFileError("y", f"{k} classes; at most 10000 (labels are 0..K-1)")
    counts = np.bincount(y, minlength=k)
    present = int((counts > 0).sum())
    if present < 2:
        raise DataFileError("y", f"{present} class; classification needs at least 2")
    need = MIN_PER_CLASS - (y_test is not None)  # with test arrays only train and val are carved
    rare = np.nonzero(counts < need)[0]
    if len(rare):
        c = int(rare[0])
        raise DataFileError(
            "y",
            f"class {c} has {int(counts[c])} example(s) (labels are 0..{k - 1}); each class "
            f"needs at least {need}, one for each split",
        )
    return k


# --- the canonical stored form ----------------------------------------------------------------

_EPOCH = (1980, 1, 1, 0, 0, 0)


def canonical_npz(d: DataArrays) -> bytes:
    """A deterministic .npz of ``d`` (same content, same bytes, same SHA-256)."""
    meta = json.dumps({"task": d.task, "kind": d.kind, "classes": d.classes}, sort_keys=True)
    arrays: list[tuple[str, np.ndarray]] = [("meta", np.array(meta)), ("x", d.x), ("y", d.y)]
    if d.x_test is not None and d.y_test is not None:
        arrays += [("x_test", d.x_test), ("y_test", d.y_test)]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays:
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def load_canonical(path: Path) -> DataArrays:
    """A file ``canonical_npz`` wrote (the worker's cache), without pickle."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"].reshape(-1)[0]))
        xt = z["x_test"] if "x_test" in z.files else None
        yt = z["y_test"] if "y_test" in z.files else None
        return DataArrays(z["x"], z["y"], xt, yt, meta["task"], meta["kind"], meta["classes"])


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


# --- local files (reglab run) -----------------------------------------------------------------


def _data_specs(data: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    if not isinstance(data, dict):
        return
    pre = data.get("pretrain")
    pretrain: dict[str, Any] = pre if isinstance(pre, dict) else {}
    for where, section in (("data", data.get("data")), ("pretrain.source", pretrain.get("source"))):
        if isinstance(section, dict) and section.get("name") == "file":
            yield where, section


def read_local(section: dict[str, Any] | Any) -> DataArrays:
    """The arrays of a ``"data": {"name": "file", ...}`` section (a dict or a DataSpec)."""
    get = section.get if isinstance(section, dict) else lambda k, d=None: getattr(section, k, d)
    path = Path(str(get("path")))
    return read_data_file(
        path,
        filename=path.name,
        task=get("task") or "classification",
        target=get("target"),
        kind=get("kind"),
    )


def local_file_infos(data: Any) -> dict[str, DataInfo]:
    """``DataInfo`` of every local file a raw spec names, keyed as ``regcore.spec.data_key``;
    raises ``SpecError`` naming ``data.path`` for a file that is missing or refused."""
    out: dict[str, DataInfo] = {}
    for where, section in _data_specs(data):
        path = section.get("path")
        if not isinstance(path, str):
            continue  # the spec's own checks say what is wrong
        try:
            out[f"file:{path}"] = read_local(section).info()
        except FileNotFoundError:
            raise SpecError([{"field": f"{where}.path", "message": f"no file at {path}"}]) from None
        except DataFileError as err:
            field = f"{where}.{err.field}" if err.field in ("task", "target", "kind") else where
            raise SpecError([{"field": f"{field}", "message": str(err)}]) from None
    return out
