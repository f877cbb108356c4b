"""Raw arrays of the built-in datasets. Nothing here downloads anything.

* ``mnist1d``: built offline by the mnist1d package's ``make_dataset`` (never ``get_dataset``,
  which downloads and unpickles), cached on disk as ``.npz`` without pickle.
* ``digits``, ``wine``, ``breast_cancer``: shipped inside scikit-learn.
* ``toy1d``: noisy samples of a smooth 1D function (regression, as in Prince ch. 8-9).
* ``moons``: scikit-learn's two interleaving half circles.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import numpy as np


def mnist1d_arrays(
    n_pool: int, n_test: int, seed: int, cache_dir: Path | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``n_pool`` train examples and ``n_test`` test examples of MNIST-1D."""
    total = -(-(n_pool + n_test) // 10) * 10  # make_dataset draws the same count for each class
    args = _generator_args(_mnist1d_default_args(cache_dir), total, n_test, seed)
    key = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir / f"mnist1d-{key}.npz" if cache_dir else None
    if path is not None and path.exists():
        with np.load(path, allow_pickle=False) as z:
            x, y, xt, yt = z["x"], z["y"], z["x_test"], z["y_test"]
    else:
        from mnist1d.data import get_dataset_args, make_dataset

        # the package's own defaults (not their JSON copy) drive the generator
        args = _generator_args(get_dataset_args(as_dict=True), total, n_test, seed)
        state = (np.random.get_state(), __import__("random").getstate())
        try:
            from mnist1d.utils import ObjectView

            d = make_dataset(ObjectView(args))
        finally:  # make_dataset reseeds the global RNGs; leave them as they were
            np.random.set_state(state[0])
            __import__("random").setstate(state[1])
        x, y, xt, yt = d["x"], d["y"], d["x_test"], d["y_test"]
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # a unique name without touching the global numpy RNG that was just restored
            tmp = path.with_suffix(f".{os.getpid()}.{uuid.uuid4().hex}.tmp.npz")
            np.savez(tmp, x=x, y=y, x_test=xt, y_test=yt)
            tmp.replace(path)
    return x[:n_pool], y[:n_pool], xt[:n_test], yt[:n_test]


def _generator_args(defaults: dict, total: int, n_test: int, seed: int) -> dict:
    args = dict(defaults)
    # make_dataset splits at int(total · train_split); the half keeps float rounding from
    # shorting the train pool by one (int(310 · 250/310) is 249)
    args.update(num_samples=total, train_split=(total - n_test + 0.5) / total, seed=seed)
    args.pop("url", None)
    return args


def _mnist1d_default_args(cache_dir: Path | None) -> dict:
    """The mnist1d package's default generator arguments (they key the cache). Kept as JSON
    beside the cache, per package version, so that a cache hit never imports mnist1d (which
    imports matplotlib: about a second)."""
    from importlib.metadata import version

    path = cache_dir / f"mnist1d-args-{version('mnist1d')}.json" if cache_dir else None
    if path is not None and path.exists():
        try:
            return json.loads(path.read_text())
        except ValueError:
            pass
    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(args, sort_keys=True))
        tmp.replace(path)
    return args


def sklearn_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets

    loader = {
        "digits": datasets.load_digits,
        "wine": datasets.load_wine,
        "breast_cancer": datasets.load_breast_cancer,
    }[name]
    bunch = loader()
    return bunch.data.astype(np.float64), bunch.target.astype(np.int64)


def toy1d_function(x: np.ndarray) -> np.ndarray:
    """The smooth function behind ``toy1d``."""
    return np.sin(2 * np.pi * x) + 0.5 * x


def toy1d_arrays(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.uniform(0.0, 1.0, size=(n, 1))
    y = toy1d_function(x[:, 0]) + rng.normal(0.0, noise, size=n)
    return x, y


def moons_arrays(n: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=n, noise=noise, random_state=seed)
    return x, y.astype(np.int64)
