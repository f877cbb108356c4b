"""Pretrain on a source, then fine-tune on the target (transfer learning).

The source is another built-in dataset, or MNIST-1D drawn by its generator with other settings:
artificial data, as Antczak (§5) pretrains on synthetic data. With 300 real MNIST-1D examples a
body pretrained on generated examples beats training from scratch (catalog: 0.30 → 0.5 acc).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from regcore.data import Dataset, build_dataset, split_sizes
from regcore.data.dataset import to_split
from regcore.spec import ExperimentSpec, PretrainSpec


def source_dataset(pre: PretrainSpec, seed: int, cache_dir: Path | None) -> Dataset:
    """The source data: the built-in dataset, or MNIST-1D with ``generator`` settings changed."""
    if not pre.generator:
        return build_dataset(pre.source, seed, cache_dir)
    from mnist1d.data import get_dataset_args, make_dataset
    from mnist1d.utils import ObjectView

    n_train, n_val, n_test = split_sizes(pre.source)
    total = -(-(n_train + n_val + n_test) // 10) * 10
    args = get_dataset_args(as_dict=True)
    args.pop("url", None)
    args.update(num_samples=total, train_split=(total - n_test + 0.5) / total, seed=seed)
    args.update(pre.generator)
    state = (np.random.get_state(), random.getstate())
    try:
        d = make_dataset(ObjectView(args))
    finally:  # make_dataset reseeds the global RNGs
        np.random.set_state(state[0])
        random.setstate(state[1])
    x, y = d["x"][: n_train + n_val], d["y"][: n_train + n_val]
    xt, yt = d["x_test"][:n_test], d["y_test"][:n_test]
    mean, std = x[:n_train].mean(0), x[:n_train].std(0)
    std = np.where(std > 1e-12, std, 1.0)
    x, xt = (x - mean) / std, (xt - mean) / std
    return Dataset(
        "mnist1d",
        "classification",
        10,
        to_split(x[:n_train], y[:n_train], "classification"),
        to_split(x[n_train:], y[n_train:], "classification"),
        to_split(xt, yt, "classification"),
    )


def source_spec(spec: ExperimentSpec) -> ExperimentSpec:
    """The pretraining run: the source data, its own seed, optional epochs and lr."""
    pre = spec.pretrain
    assert pre is not None
    train = spec.train.model_copy(
        update={k: v for k, v in (("epochs", pre.epochs), ("lr", pre.lr)) if v is not None}
    )
    return ExperimentSpec.model_validate(
        {
            **spec.model_dump(mode="json", exclude={"pretrain", "mc_dropout"}),
            "seed": spec.seed + pre.seed_offset,
            "data": pre.source.model_dump(mode="json"),
            "train": train.model_dump(mode="json"),
        }
    )
