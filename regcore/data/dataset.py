"""The in-memory dataset every run trains on: three splits of tensors and what they mean."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class Split:
    x: torch.Tensor  # float32 [N, F]
    y: torch.Tensor  # long [N] (classification) or float32 [N, 1] (regression)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def to(self, device: torch.device) -> Split:
        return Split(self.x.to(device), self.y.to(device))


@dataclass
class Dataset:
    name: str
    task: str  # "classification" or "regression"
    num_classes: int  # 1 for regression
    train: Split
    val: Split
    test: Split
    image_shape: tuple[int, int] | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    #: inputs without labels (``data.n_unlabeled``), standardized as train; None when not asked
    unlabeled: torch.Tensor | None = None

    def to(self, device: torch.device) -> Dataset:
        return Dataset(
            self.name,
            self.task,
            self.num_classes,
            self.train.to(device),
            self.val.to(device),
            self.test.to(device),
            self.image_shape,
            self.extras,
            None if self.unlabeled is None else self.unlabeled.to(device),
        )

    @property
    def in_features(self) -> int:
        return int(self.train.x.shape[1])

    @property
    def out_features(self) -> int:
        return self.num_classes if self.task == "classification" else 1


def to_split(x: np.ndarray, y: np.ndarray, task: str) -> Split:
    xt = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)
    if task == "classification":
        return Split(xt, torch.as_tensor(y, dtype=torch.long))
    return Split(xt, torch.as_tensor(y, dtype=torch.float32).reshape(-1, 1))
