"""regcore.datafiles: every format read, every bad file refused with the field that is wrong."""

from __future__ import annotations

import hashlib
import io
import zipfile

import numpy as np
import pytest

from regcore.datafiles import DataFileError, canonical_npz, read_data_file
from tests.datasets import files as F

X, Y = F.table(n=200)


def refused(data: bytes, **kw) -> DataFileError:
    with pytest.raises(DataFileError) as info:
        read_data_file(data, filename=kw.pop("filename", "f"), **kw)
    return info.value


@pytest.mark.parametrize(
    ("data", "kw"),
    [
        (F.npz(x=X, y=Y), {}),
        (F.csv(X, Y), {"target": "label"}),
        (F.parquet(X, Y), {"target": "label"}),
    ],
    ids=["npz", "csv", "parquet"],
)
def test_each_format_reads_to_the_same_arrays(data, kw):
    d = read_data_file(data, **kw)
    assert d.x.shape == (200, 5) and d.classes == 2
    np.testing.assert_allclose(d.x, X.astype(np.float32), rtol=1e-5)
    np.testing.assert_array_equal(d.y, Y)


def test_the_canonical_file_is_the_same_bytes_for_the_same_content():
    a = canonical_npz(read_data_file(F.npz(x=X, y=Y)))
    b = canonical_npz(read_data_file(F.npz(x=X, y=Y)))
    assert hashlib.sha256(a).digest() == hashlib.sha256(b).digest()
    c = canonical_npz(read_data_file(F.npz(x=X, y=1 - Y)))
    assert a != c


def test_the_canonical_file_loads_back_without_pickle(tmp_path):
    from regcore.datafiles import load_canonical

    d = read_data_file(F.npz(x=X, y=Y, x_test=X[:20], y_test=Y[:20]), task="classification")
    (tmp_path / "c.npz").write_bytes(canonical_npz(d))
    back = load_canonical(tmp_path / "c.npz")
    assert (back.task, back.kind, back.classes) == ("classification", "signal", 2)
    np.testing.assert_array_equal(back.x, d.x)
    np.testing.assert_array_equal(back.y_test, Y[:20])


def test_shapes_that_disagree_name_the_array():
    assert refused(F.npz(x=X, y=Y[:-1])).field == "y"
    err = refused(F.npz(x=X, y=Y, x_test=X[:, :3], y_test=Y))
    assert err.field == "x_test" and "(3,)" in err.message
    assert refused(F.npz(x=X, y=Y, x_test=X)).field == "y_test"


def test_non_finite_and_non_numeric_values_name_the_row_or_column():
    x = X.copy()
    x[17, 2] = np.nan
    err = refused(F.npz(x=x, y=Y))
    assert (err.field, "row 17" in err.message) == ("x", True)
    header, rest = F.csv(X, Y).split(b"\n", 1)
    err = refused(header + b"\n1,inf,2,3,4,0\n" + rest, target="label")
    assert err.field == "column f1" and "row 0" in err.message
    err = refused(header + b"\n1,2,abc,3,4,0\n" + rest, target="label")
    assert err.field == "column f2" and "not numeric" in err.message
    err = refused(header + b"\n1,,2,3,4,0\n" + rest, target="label")
    assert err.field == "column f1" and "row 0" in err.message


def test_labels_must_be_integers_0_to_k_minus_1_with_two_classes_each_common_enough():
    assert "not an integer" in refused(F.npz(x=X, y=Y + 0.5)).message
    assert "negative" in refused(F.npz(x=X, y=np.where(np.arange(200) == 4, -1, Y))).message
    assert "at least 2" in refused(F.npz(x=X, y=np.zeros_like(Y))).message
    rare = Y.copy()
    rare[:2] = 2  # class 2 has two examples: one split would go without
    err = refused(F.npz(x=X, y=rare))
    assert err.field == "y" and "class 2 has 2" in err.message
    # with test arrays only train and validation are carved: two examples are enough
    ok = read_data_file(F.npz(x=X, y=rare, x_test=X[:20], y_test=Y[:20]))
    assert ok.classes == 3
    # regression takes real-valued targets
    assert read_data_file(F.npz(x=X, y=Y + 0.5), task="regression").classes is None


def test_a_file_over_the_limit_is_refused():
    err = refused(F.npz(x=X, y=Y), max_bytes=1000)
    assert err.field == "file" and "limit of 1000" in err.message


def test_a_compressed_member_that_would_expand_past_the_limit_is_refused_unexpanded():
    bomb = F.zip_bomb(64 * 2**20)
    assert len(bomb) < 2**20
    err = refused(bomb, max_bytes=8 * 2**20)
    assert err.field == "file" and "expand" in err.message


def test_a_member_whose_zip_header_understates_its_size_stops_at_the_cap():
    """The .npy header's shape asks for more than the cap: refused before reading the data."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**7, 1)}
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x.npy", header.getvalue() + b"\0" * 100)
        zf.writestr("y.npy", b"")
    err = refused(buf.getvalue(), max_bytes=2**20)
    assert err.field == "x" and "limit" in err.message


def test_a_pickled_object_array_is_refused_and_never_loaded(monkeypatch):
    import pickle

    def boom(*a, **k):  # pragma: no cover - reached only if the reader unpickled
        raise AssertionError("unpickled")

    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    err = refused(F.pickled_npz())
    assert err.field == "x" and "pickle" in err.message


def test_unknown_arrays_missing_arrays_and_bad_targets_are_named():
    assert refused(F.npz(x=X, y=Y, z=X)).field == "z"
    assert refused(F.npz(x=X)).field == "y"
    err = refused(F.csv(X, Y, target="label"), target="nope")
    assert err.field == "target" and "'label'" in err.message
    assert refused(F.npz(x=X, y=Y), target="label").field == "target"
    assert refused(b"PK\x03\x04garbage").field == "file"
