"""Multi-task learning: an auxiliary head on a second target, sharing the body (Caruana 1997;
Prince §9.3.6; the Lecture notes' "auxiliary tasks"). The auxiliary loss, times its weight, is
added to the data loss like a penalty, so it is logged as ``penalty_multitask``.

Targets: ``shift``, the circular translation MNIST-1D's generator gave each example (recorded by
``regcore.data.mnist1d_render``), or ``peak``, the position of each input's largest value (any
data). Both are regressed after standardization on the training split.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch import nn

from regcore.data import Dataset, split_sizes
from regcore.regularizers.base import Regularizer, Step
from regcore.spec import ExperimentSpec, MultitaskSpec
from regcore.training.context import RunContext
from regcore.training.loop import Trainer
from regcore.training.optim import build_scheduler


def mnist1d_shifts(spec: ExperimentSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The generator's shift of every train, val and test example, aligned with build_dataset."""
    from mnist1d.data import get_dataset_args
    from mnist1d.utils import ObjectView

    from regcore.data.mnist1d_render import generate

    n_train, n_val, n_test = split_sizes(spec.data)
    total = -(-(n_train + n_val + n_test) // 10) * 10
    args = get_dataset_args(as_dict=True)
    args.pop("url", None)  # the same settings regcore.data.sources passes to make_dataset
    args.update(num_samples=total, train_split=(total - n_test + 0.5) / total, seed=spec.seed)
    state = (np.random.get_state(), random.getstate())
    try:
        data, lat = generate(ObjectView(args))
    finally:
        np.random.set_state(state[0])
        random.setstate(state[1])
    split = len(data["y"])
    s = lat.shift.astype(np.float64)
    return s[:n_train], s[n_train : n_train + n_val], s[split : split + n_test]


def peak_positions(x: torch.Tensor) -> torch.Tensor:
    return x.argmax(1).to(torch.float32) / x.shape[1]


def aux_targets(spec: ExperimentSpec, data: Dataset) -> dict[str, torch.Tensor]:
    """Standardized auxiliary targets ``[N, 1]`` per split, on the data's device."""
    assert spec.multitask is not None
    dev = data.train.x.device
    if spec.multitask.target == "shift":
        raw = [torch.as_tensor(a, dtype=torch.float32, device=dev) for a in mnist1d_shifts(spec)]
    else:
        raw = [peak_positions(s.x) for s in (data.train, data.val, data.test)]
    mean, std = raw[0].mean(), raw[0].std().clamp_min(1e-8)
    return {
        k: ((r - mean) / std).unsqueeze(1)
        for k, r in zip(("train", "val", "test"), raw, strict=True)
    }


class AuxiliaryTask(Regularizer):
    """Adds weight · MSE(aux_head(features), target) to each step's loss."""

    def __init__(self, spec: MultitaskSpec, task: Any, head: nn.Linear, targets: dict[str, Any]):
        super().__init__(spec, task)  # type: ignore[arg-type]
        self.head = head
        self.targets = targets
        self.features: torch.Tensor | None = None

    @property
    def name(self) -> str:
        return "multitask"

    def capture(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        self.features = inputs[0]

    def penalty(self, step: Step) -> torch.Tensor:
        assert self.features is not None and step.indices is not None
        pred = self.head(self.features)
        target = self.targets["train"][step.indices]
        return self.spec.weight * nn.functional.mse_loss(pred, target)  # type: ignore[attr-defined]

    @torch.no_grad()
    def split_loss(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> float:
        was = model.training
        model.eval()
        try:
            model(x)
            assert self.features is not None
            return float(nn.functional.mse_loss(self.head(self.features), target))
        finally:
            model.train(was)


class MultiTaskTrainer(Trainer):
    """A Trainer whose model carries an auxiliary head fed by the main head's input features."""

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        spec = ctx.spec
        assert spec.multitask is not None
        main_head = self.model.head()  # type: ignore[operator]
        head = nn.Linear(main_head.in_features, 1).to(self.device)
        self.model.add_module("aux_head", head)  # saved in checkpoints with the model
        self.aux = AuxiliaryTask(spec.multitask, self.task, head, aux_targets(spec, self.data))
        main_head.register_forward_pre_hook(self.aux.capture)
        self.optimizer.add_param_group({"params": list(head.parameters())})
        self.scheduler = build_scheduler(self.optimizer, spec.train)
        self.regs.append(self.aux)
        self.hooks["penalty"].append(self.aux)
        self.penalty_keys.append("multitask")
        self.reuse_last_eval = False

    def end_epoch(self, batch_metrics: dict[str, float]) -> dict[str, float]:
        return {**super().end_epoch(batch_metrics), **self.aux_split_losses()}

    def aux_split_losses(self) -> dict[str, float]:
        """``aux_<split>_loss``: the auxiliary task's loss on each split."""
        return {
            f"aux_{split}_loss": self.aux.split_loss(
                self.model, getattr(self.data, split).x, self.aux.targets[split]
            )
            for split in ("train", "val", "test")
        }
