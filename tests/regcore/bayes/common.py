"""The small-data MNIST-1D problem of the Bayesian effect tests, and a step helper."""

from __future__ import annotations

from typing import Any

import torch

from regcore.training.loop import Trainer

#: few examples, a tiny MLP trained far past memorisation: MAP is overconfident here
SMALL_DATA: dict[str, Any] = dict(
    data={"name": "mnist1d", "n_train": 300, "n_val": 100, "n_test": 500},
    model={"name": "mlp", "hidden": [64]},
)


def sgd(lr: float, epochs: int) -> dict[str, Any]:
    return {"optimizer": "sgd", "lr": lr, "batch_size": 50, "epochs": epochs, "device": "cpu"}


def first_batch(tr: Trainer) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = tr.data.train.x[:50], tr.data.train.y[:50]
    return x, y


def params(tr: Trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in tr.model.parameters()]
