"""Small dataset files for the tests: labels a simple function of the inputs, and bad files."""

from __future__ import annotations

import io
import zipfile

import numpy as np


def table(n: int = 400, f: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """y = [x0 + x1 > 0]: a linear rule an MLP learns in a few epochs."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, f))
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64)


def images(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """8×8 images: a bright 3×3 blob in the left (0) or the right (1) half, on noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.3, size=(n, 8, 8)).astype(np.float32)
    y = rng.integers(0, 2, size=n)
    for i in range(n):
        r = rng.integers(0, 6)
        c = rng.integers(0, 2) + (4 if y[i] else 0)
        x[i, r : r + 3, c : c + 2] += 2.0
    return x, y.astype(np.int64)


def npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def csv(x: np.ndarray, y: np.ndarray, target: str = "label") -> bytes:
    lines = [",".join([f"f{i}" for i in range(x.shape[1])] + [target])]
    lines += [
        ",".join([*(f"{v:.6g}" for v in row), str(int(t))]) for row, t in zip(x, y, strict=True)
    ]
    return ("\n".join(lines) + "\n").encode()


def parquet(x: np.ndarray, y: np.ndarray, target: str = "label") -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {f"f{i}": x[:, i] for i in range(x.shape[1])}
    cols[target] = y
    buf = io.BytesIO()
    pq.write_table(pa.table(cols), buf)
    return buf.getvalue()


def zip_bomb(expanded: int) -> bytes:
    """An npz whose x member is a valid .npy header followed by ``expanded`` zero bytes:
    compresses to about a thousandth of that."""
    header = io.BytesIO()
    n = expanded // 8
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (n, 1)}
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("x.npy", "w", force_zip64=True) as fh:
            fh.write(header.getvalue())
            block = b"\0" * (1 << 20)
            left = n * 8
            while left > 0:
                fh.write(block[: min(left, len(block))])
                left -= len(block)
        y = io.BytesIO()
        np.save(y, np.zeros(n, dtype=np.int64))
        zf.writestr("y.npy", y.getvalue())
    return buf.getvalue()


def pickled_npz() -> bytes:
    """An npz whose x is an object array (a pickle inside)."""
    buf = io.BytesIO()
    x = np.empty(3, dtype=object)
    x[:] = [{"a": 1}, [2], "three"]
    np.savez(buf, x=x, y=np.array([0, 1, 0]))
    return buf.getvalue()
