"""Build a run's dataset from its ``DataSpec``: deterministic for the same spec and seed."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch

from regcore.data import mnist1d_render, sources
from regcore.data.dataset import Dataset, Split, to_split
from regcore.data.unlabeled import generated_unlabeled
from regcore.spec import DATASET_SIZES, GENERATED_DEFAULTS, DataSpec

__all__ = ["Dataset", "Split", "build_dataset", "split_sizes"]

CLASSIFICATION = {"mnist1d", "digits", "wine", "breast_cancer", "moons"}


def split_sizes(spec: DataSpec) -> tuple[int, int, int]:
    """(n_train, n_val, n_test) after defaults: generated sets use fixed defaults; shipped sets
    keep 20% for test, 20% of the rest for validation, and train on what remains."""
    total = DATASET_SIZES[spec.name]
    if total is None:
        d_train, d_val, d_test = GENERATED_DEFAULTS[spec.name]
        return spec.n_train or d_train, spec.n_val or d_val, spec.n_test or d_test
    n_test = spec.n_test or round(0.2 * total)
    n_val = spec.n_val or round(0.2 * (total - n_test))
    n_unlabeled = spec.n_unlabeled or 0  # carved from the same pool (regcore/data/unlabeled.py)
    n_train = spec.n_train or total - n_test - n_val - n_unlabeled
    if n_train + n_val + n_test + n_unlabeled > total:
        asked = n_train + n_val + n_test + n_unlabeled
        raise ValueError(f"{spec.name} has {total} examples; asked for {asked}")
    return n_train, n_val, n_test


def _corrupt_labels(y: np.ndarray, fraction: float, k: int, rng: np.random.Generator) -> np.ndarray:
    """Replace ``fraction`` of the labels by a different class, drawn uniformly."""
    y = y.copy()
    idx = rng.choice(len(y), size=round(fraction * len(y)), replace=False)
    y[idx] = (y[idx] + rng.integers(1, k, size=len(idx))) % k
    return y


def build_dataset(spec: DataSpec, seed: int, cache_dir: Path | None = None) -> Dataset:
    if spec.name in ("upload", "file"):  # not built in: regcore/data/upload.py
        from regcore.data.upload import build_uploaded

        return build_uploaded(spec, seed, cache_dir)
    n_train, n_val, n_test = split_sizes(spec)
    rng = np.random.default_rng(seed)
    name = spec.name
    x_unlabeled = None
    if spec.n_unlabeled and DATASET_SIZES[name] is None:
        x_unlabeled = generated_unlabeled(name, spec.n_unlabeled, seed, spec.noise, cache_dir)
    if name == "mnist1d":
        x, y, x_test, y_test = sources.mnist1d_arrays(n_train + n_val, n_test, seed, cache_dir)
    else:
        n = n_train + n_val + n_test
        if name == "toy1d":
            x, y = sources.toy1d_arrays(n, spec.noise, rng)
        elif name == "moons":
            x, y = sources.moons_arrays(n, spec.noise, seed)
        else:
            x, y = sources.sklearn_arrays(name)
        shuffled = rng.permutation(len(x))
        order = shuffled[:n]
        if spec.n_unlabeled and x_unlabeled is None:  # rows no split took; labels dropped
            x_unlabeled = x[shuffled[n : n + spec.n_unlabeled]]
        x, y = x[order], y[order]
        x, x_test, y, y_test = x[: n - n_test], x[n - n_test :], y[: n - n_test], y[n - n_test :]
    # the validation split is carved from the training pool
    x_train, y_train = x[:n_train], y[:n_train]
    x_val, y_val = x[n_train : n_train + n_val], y[n_train : n_train + n_val]

    task = "classification" if name in CLASSIFICATION else "regression"
    k = int(max(y.max(), y_test.max()) + 1) if task == "classification" else 1
    if spec.label_noise > 0:
        y_train = _corrupt_labels(y_train, spec.label_noise, k, rng)
    extras: dict = {}
    if spec.standardize:  # statistics of the training split only
        mean, std = x_train.mean(0), x_train.std(0)
        std = np.where(std > 1e-12, std, 1.0)
        x_train, x_val, x_test = ((a - mean) / std for a in (x_train, x_val, x_test))
        extras.update(feature_mean=mean, feature_std=std)
        if x_unlabeled is not None:
            x_unlabeled = (x_unlabeled - mean) / std
    if name == "mnist1d":  # the generator's latents of the train split, computed on demand;
        # ``n_train=`` may ask for more rows of the pool (the val split follows the train split)
        extras["mnist1d_latents"] = partial(
            mnist1d_render.train_latents, n_train + n_val, n_test, seed, n_train=n_train
        )
    return Dataset(
        name=name,
        task=task,
        num_classes=k,
        train=to_split(x_train, y_train, task),
        val=to_split(x_val, y_val, task),
        test=to_split(x_test, y_test, task),
        image_shape=(8, 8) if name == "digits" else None,
        extras=extras,
        unlabeled=None if x_unlabeled is None else torch.tensor(x_unlabeled, dtype=torch.float32),
    )
