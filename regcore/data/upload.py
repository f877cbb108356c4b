"""Datasets that are not built in: an upload (by id, from the local cache the worker fills) or a
local file (``reglab run`` only). Splits are carved as for the shipped built-ins.

Rows of any shape ((N, F), (N, C, L), (N, H, W), (N, C, H, W)) are flattened to [N, F] like every
dataset; ``extras["input_shape"]`` keeps the shape of one row for the models that need it (cnn2d,
multichannel cnn1d) and ``image_shape`` is (H, W) for single-channel images, as for digits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from regcore.data.dataset import Dataset, to_split
from regcore.datafiles import DataArrays, load_canonical, read_local, sha256_file
from regcore.spec import DataSpec

UPLOADED = ("upload", "file")


def cached_path(cache_dir: Path, dataset_id: str) -> Path:
    """Where the worker keeps an uploaded dataset (``worker/datasets.py`` fills it)."""
    return Path(cache_dir) / "datasets" / f"{dataset_id}.npz"


def uploaded_arrays(spec: DataSpec, cache_dir: Path | None) -> tuple[DataArrays, str | None]:
    """The checked arrays of an upload or local file, and the SHA-256 of the file read."""
    if spec.name == "file":
        assert spec.path is not None
        return read_local(spec), sha256_file(Path(spec.path))
    assert spec.id is not None
    path = cached_path(cache_dir, spec.id) if cache_dir is not None else None
    if path is None or not path.is_file():
        raise FileNotFoundError(f"dataset {spec.id} has not been fetched to this machine")
    return load_canonical(path), sha256_file(path)


def split_counts(spec: DataSpec, rows: int, test_rows: int) -> tuple[int, int, int]:
    """(n_train, n_val, n_test): 20% test (unless the file has test rows), 20% of the rest for
    validation, the remainder to train, as for the shipped built-ins."""
    n_test = spec.n_test or (test_rows if test_rows else round(0.2 * rows))
    if test_rows:
        n_test = min(n_test, test_rows)
    pool = rows if test_rows else rows - n_test
    n_val = spec.n_val or round(0.2 * pool)
    n_train = spec.n_train or pool - n_val
    if n_train < 1 or n_train + n_val > pool:
        raise ValueError(
            f"data: {rows} rows leave {pool} for train and validation; asked for "
            f"{n_train} + {n_val}"
        )
    return n_train, n_val, n_test


def build_uploaded(spec: DataSpec, seed: int, cache_dir: Path | None) -> Dataset:
    from regcore.data import _corrupt_labels  # the built-ins' own rule

    arrays, sha = uploaded_arrays(spec, cache_dir)
    rng = np.random.default_rng(seed)
    x = arrays.x.reshape(len(arrays.x), -1).astype(np.float64)
    y = arrays.y
    test_rows = 0 if arrays.x_test is None else len(arrays.x_test)
    n_train, n_val, n_test = split_counts(spec, len(x), test_rows)
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    if arrays.x_test is not None and arrays.y_test is not None:
        x_test = arrays.x_test.reshape(test_rows, -1).astype(np.float64)[:n_test]
        y_test = arrays.y_test[:n_test]
    else:
        x_test, y_test = x[len(x) - n_test :], y[len(x) - n_test :]
        x, y = x[: len(x) - n_test], y[: len(y) - n_test]
    x_train, y_train = x[:n_train], y[:n_train]
    x_val, y_val = x[n_train : n_train + n_val], y[n_train : n_train + n_val]
    k = arrays.classes or 1
    if spec.label_noise > 0:
        y_train = _corrupt_labels(y_train, spec.label_noise, k, rng)
    # sha256: of the file read (provenance records it as the dataset's, regcore/provenance.py)
    extras: dict = {"input_shape": tuple(arrays.x.shape[1:]), "sha256": sha}
    if spec.standardize:  # statistics of the training split only, as for the built-ins
        mean, std = x_train.mean(0), x_train.std(0)
        std = np.where(std > 1e-12, std, 1.0)
        x_train, x_val, x_test = ((a - mean) / std for a in (x_train, x_val, x_test))
        extras.update(feature_mean=mean, feature_std=std)
    shape = arrays.x.shape[1:]
    image = tuple(shape) if arrays.kind == "image" and len(shape) == 2 else None
    return Dataset(
        name=spec.id or Path(spec.path or "file").name,
        task=arrays.task,
        num_classes=k,
        train=to_split(x_train, y_train, arrays.task),
        val=to_split(x_val, y_val, arrays.task),
        test=to_split(x_test, y_test, arrays.task),
        image_shape=image,  # type: ignore[arg-type]
        extras=extras,
    )
