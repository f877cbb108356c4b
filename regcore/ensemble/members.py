"""Ensemble members: their data (shared, or a bootstrap resample) and their single-run Trainers.

Members share one dataset, built from the ensemble's seed; a member's own seed (seed + i, or its
``vary`` override) only sets its initialization, its batch order and its noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from regcore.data import Dataset, Split
from regcore.spec import ExperimentSpec
from regcore.training.context import RunContext
from regcore.training.loop import Trainer
from regcore.training.reporter import Reporter
from regcore.training.rng import rng_state, set_rng_state


def bootstrap_indices(n: int, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """n draws from range(n) with replacement (Breiman 1996), from a stream of their own."""
    rng = np.random.default_rng([seed, 0xB00757])
    return torch.as_tensor(rng.integers(0, n, size=n), device=device)


def with_train(data: Dataset, train: Split, index: torch.Tensor) -> Dataset:
    """``data`` with its training split replaced (bagging, train+val retraining).

    ``index``: for each new training row, its row in the original pool (train rows, then val
    rows), kept as ``extras["train_index"]`` for what is tied to the original rows (the
    generator latents ``feature_noise`` re-renders)."""
    prior = data.extras.get("train_index")
    extras = {**data.extras, "train_index": index if prior is None else prior[index]}
    return Dataset(
        data.name,
        data.task,
        data.num_classes,
        train,
        data.val,
        data.test,
        data.image_shape,
        extras,
        data.unlabeled,
    )


def build_trainer(
    spec: ExperimentSpec,
    workdir: Path,
    data: Dataset,
    reporter: Reporter | None,
    *,
    checkpoint_every: int = 0,
    **kwargs: Any,
) -> Trainer:
    """A single-run Trainer for ``spec`` on ``data`` (a member, or a stage of a pipeline; no
    checkpoints of its own unless asked); ``kwargs``: ``RunContext.build``'s device,
    cache_dir and threads."""
    ctx = RunContext.build(
        spec, workdir, data=data, reporter=reporter, checkpoint_every=checkpoint_every, **kwargs
    )
    return Trainer(ctx)


class CancelOnly:
    """Passes a cancel request through to a member; its epochs are reported by the ensemble."""

    def __init__(self, reporter: Reporter):
        self.reporter = reporter

    def on_start(self, info: dict[str, Any]) -> None:
        pass

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        pass

    def on_checkpoint(self, info: Any) -> None:
        pass

    def should_cancel(self) -> bool:
        return self.reporter.should_cancel()


@dataclass
class Member:
    """One member's Trainer and its own global-RNG state.

    Members train in lock-step, an epoch each in turn; swapping in each member's RNG state
    makes its draws (dropout masks, noise) the ones it would have made training alone.
    """

    trainer: Trainer
    rng: dict[str, Any] = field(default_factory=dict)
    done: bool = False
    metrics: dict[str, float] = field(default_factory=dict)

    def enter(self) -> None:
        if self.rng:
            set_rng_state(self.rng, {})

    def leave(self) -> None:
        self.rng = rng_state({})

    def train_state(self) -> dict[str, Any]:
        st = self.trainer.train_state()
        streams = {k: g.get_state() for k, g in self.trainer.generators().items()}
        st["rng"] = {**self.rng, "generators": streams}
        st["done"] = self.done
        return st

    def load(self, model_state: dict[str, torch.Tensor], st: dict[str, Any]) -> None:
        """Restore what ``train_state`` saved: the member's Trainer loads its part (as a single
        run resumes), which sets the global RNG to the member's; that state is kept for
        ``enter``."""
        self.trainer.load(model_state, st)
        self.leave()
        self.done = bool(st["done"])
