"""Unlabelled examples (``data.n_unlabeled``): inputs of the same dataset whose labels are
withheld, for semi-supervised regularizers (``pseudo_label``, ``consistency``) and for
``self_supervised`` pretraining.

The labelled splits stay exactly as they are without ``n_unlabeled``, so a semi-supervised run
and its supervised-only baseline train on the same labelled rows:

* generated datasets (mnist1d, toy1d, moons): a further draw of the same generator under a seed of
  its own (``seed + UNLABELED_SEED_OFFSET``);
* shipped datasets (digits, wine, breast_cancer): rows of the shuffled pool that no split took.

Only the inputs are kept; the labels never leave this module. ``UnlabeledBatches`` draws the
unlabelled batch the training loop sets beside each labelled one (``Step.unlabeled``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from regcore.data import sources
from regcore.spec import unlabeled_batch_size

#: the unlabelled draw of a generated dataset uses seed + this, never the labelled splits' seed
UNLABELED_SEED_OFFSET = 7919


def generated_unlabeled(
    name: str, n: int, seed: int, noise: float, cache_dir: Path | None
) -> np.ndarray:
    """``n`` fresh inputs of a generated dataset, from a stream of their own."""
    seed = seed + UNLABELED_SEED_OFFSET
    if name == "mnist1d":
        return sources.mnist1d_arrays(n, 0, seed, cache_dir)[0]
    if name == "toy1d":
        return sources.toy1d_arrays(n, noise, np.random.default_rng(seed))[0]
    if name == "moons":
        return sources.moons_arrays(n, noise, seed)[0]
    raise ValueError(f"n_unlabeled: {name} is not a generated dataset")


class UnlabeledBatches:
    """The unlabelled batch beside each labelled batch: ⌈B·U/N⌉ rows (B the batch size, U the
    unlabelled and N the labelled rows), so that an epoch sees as many unlabelled rows as the
    pool holds, at most 16·B (``regcore.spec.unlabeled_batch_size``); drawn with replacement
    from a generator of its own (saved in checkpoints)."""

    def __init__(self, x: torch.Tensor, labelled_rows: int, batch_size: int, seed: int):
        self.x = x
        self.size = unlabeled_batch_size(batch_size, labelled_rows, len(x))
        self.generator = torch.Generator().manual_seed(seed + UNLABELED_SEED_OFFSET)

    def draw(self) -> torch.Tensor:
        idx = torch.randint(len(self.x), (self.size,), generator=self.generator)
        return self.x[idx.to(self.x.device)]
