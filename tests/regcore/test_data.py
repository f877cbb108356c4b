"""Datasets: sizes, determinism, train-only standardization, label noise, the mnist1d cache."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from regcore.data import build_dataset, split_sizes
from regcore.spec import DataSpec

SMALL_MNIST1D = {"name": "mnist1d", "n_train": 200, "n_val": 50, "n_test": 60}

# name -> (n_train, n_val, n_test, task, classes, features) with default sizes
EXPECTED = {
    "digits": (1150, 288, 359, "classification", 10, 64),
    "wine": (114, 28, 36, "classification", 3, 13),
    "breast_cancer": (364, 91, 114, "classification", 2, 30),
    "toy1d": (30, 30, 200, "regression", 1, 1),
    "moons": (200, 100, 500, "classification", 2, 2),
}


def _same(a, b) -> bool:
    return all(
        torch.equal(getattr(a, s).x, getattr(b, s).x)
        and torch.equal(getattr(a, s).y, getattr(b, s).y)
        for s in ("train", "val", "test")
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_shipped_or_generated_dataset_builds_with_its_default_sizes(name):
    n_train, n_val, n_test, task, k, f = EXPECTED[name]
    d = build_dataset(DataSpec(name=name), seed=0)
    assert (len(d.train), len(d.val), len(d.test)) == (n_train, n_val, n_test)
    assert (d.task, d.num_classes, d.in_features) == (task, k, f)
    assert d.train.x.dtype == torch.float32
    if task == "classification":
        assert d.train.y.dtype == torch.long and d.train.y.shape == (n_train,)
        assert int(d.train.y.max()) < k
    else:
        assert d.train.y.shape == (n_train, 1) and d.out_features == 1


def test_mnist1d_builds_with_the_asked_sizes(cache_dir):
    d = build_dataset(DataSpec(**SMALL_MNIST1D), seed=0, cache_dir=cache_dir)
    assert (len(d.train), len(d.val), len(d.test)) == (200, 50, 60)
    assert (d.task, d.num_classes, d.in_features) == ("classification", 10, 40)


def test_digits_knows_its_image_shape():
    assert build_dataset(DataSpec(name="digits"), seed=0).image_shape == (8, 8)
    assert build_dataset(DataSpec(name="wine"), seed=0).image_shape is None


def test_explicit_sizes_of_a_shipped_dataset_are_honoured():
    assert split_sizes(DataSpec(name="digits", n_train=100, n_val=50, n_test=200)) == (100, 50, 200)
    d = build_dataset(DataSpec(name="digits", n_train=100, n_val=50, n_test=200), seed=0)
    assert (len(d.train), len(d.val), len(d.test)) == (100, 50, 200)


@pytest.mark.parametrize("name", ["digits", "toy1d", "moons"])
def test_the_same_spec_and_seed_give_the_same_data_and_other_seeds_differ(name):
    spec = DataSpec(name=name)
    assert _same(build_dataset(spec, seed=3), build_dataset(spec, seed=3))
    assert not torch.equal(build_dataset(spec, seed=3).train.x, build_dataset(spec, seed=4).train.x)


def test_mnist1d_is_deterministic_per_seed_and_differs_across_seeds(cache_dir):
    spec = DataSpec(**SMALL_MNIST1D)
    a = build_dataset(spec, seed=0, cache_dir=cache_dir)
    assert _same(a, build_dataset(spec, seed=0, cache_dir=cache_dir))
    assert not torch.equal(a.train.x, build_dataset(spec, seed=1, cache_dir=cache_dir).train.x)


@pytest.mark.parametrize("name", ["digits", "breast_cancer"])
def test_standardization_uses_the_training_split_statistics_only(name):
    d = build_dataset(DataSpec(name=name), seed=0)
    x = d.train.x.double()
    varying = x.std(0, unbiased=False) > 0
    assert torch.allclose(x.mean(0), torch.zeros_like(x.mean(0)), atol=1e-5)
    assert torch.allclose(
        x.std(0, unbiased=False)[varying], torch.ones(int(varying.sum())).double(), atol=1e-4
    )
    for split in (d.val, d.test):
        mean = split.x.double().mean(0)[varying]
        # another split's mean is near 0 but not exactly (it was not fitted on)
        assert mean.abs().max() > 1e-3
        assert mean.abs().mean() < 0.5


def test_standardize_false_keeps_raw_features():
    d = build_dataset(DataSpec(name="digits", standardize=False), seed=0)
    assert float(d.train.x.min()) == 0.0 and float(d.train.x.max()) == 16.0


@pytest.mark.parametrize("name", ["digits", "mnist1d"])
def test_label_noise_changes_that_fraction_of_training_labels_and_nothing_else(name, cache_dir):
    sizes = SMALL_MNIST1D if name == "mnist1d" else {"name": name}
    clean = build_dataset(DataSpec(**sizes), seed=0, cache_dir=cache_dir)
    noisy = build_dataset(DataSpec(**sizes, label_noise=0.3), seed=0, cache_dir=cache_dir)
    changed = (clean.train.y != noisy.train.y).float().mean().item()
    assert changed == pytest.approx(0.3, abs=0.01)
    assert int(noisy.train.y.max()) < clean.num_classes and int(noisy.train.y.min()) >= 0
    assert torch.equal(clean.train.x, noisy.train.x)
    for split in ("val", "test"):
        assert torch.equal(getattr(clean, split).y, getattr(noisy, split).y)
        assert torch.equal(getattr(clean, split).x, getattr(noisy, split).x)


def test_mnist1d_is_cached_on_disk_without_pickle_and_rebuilt_identically(tmp_path):
    spec = DataSpec(**SMALL_MNIST1D)
    first = build_dataset(spec, seed=0, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1
    with np.load(files[0], allow_pickle=False) as z:
        assert {"x", "y", "x_test", "y_test"} <= set(z.files)
    assert not list(tmp_path.glob("*.tmp*"))
    mtime = files[0].stat().st_mtime_ns
    second = build_dataset(spec, seed=0, cache_dir=tmp_path)
    assert _same(first, second)
    assert files[0].stat().st_mtime_ns == mtime  # read, not rewritten


def test_building_mnist1d_leaves_the_global_rngs_alone(tmp_path):
    np.random.seed(123)
    random.seed(123)
    np_state, py_state = np.random.get_state(), random.getstate()
    build_dataset(DataSpec(**SMALL_MNIST1D), seed=7, cache_dir=tmp_path)  # generated and cached
    build_dataset(DataSpec(**SMALL_MNIST1D), seed=7, cache_dir=tmp_path)  # from the cache
    after = np.random.get_state()
    assert np.array_equal(after[1], np_state[1]) and after[2] == np_state[2]
    assert random.getstate() == py_state


def test_to_device_keeps_every_split():
    d = build_dataset(DataSpec(name="wine"), seed=0).to(torch.device("cpu"))
    assert (len(d.train), len(d.val), len(d.test)) == (114, 28, 36)
