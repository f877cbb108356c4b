"""The hooks every regularizer may implement; each does nothing by default.

The training loop (``regcore/training/loop.py``) calls every hook of every regularizer in the
order of the spec's ``regularizers`` list. One step reads, top to bottom:

    x, y = reg.transform_batch(x, y, step)         # augment, noise, mixup, smoothed targets
    reg.before_forward(step)                       # e.g. weight noise perturbs the weights
    out = model(x); loss = data_loss(out, y)
    loss = reg.transform_loss(loss, step)          # e.g. flooding
    loss = loss + Σ reg.penalty(step)              # L2, L1, entropy, adversarial term ...
    loss.backward()
    reg.before_optimizer_step(step)                # restore noisy weights, decoupled decay
    optimizer.step()
    reg.after_optimizer_step(step)                 # max-norm, proximal L1

and once per epoch ``step_lr(epoch)`` (in place of the run's lr scheduler step when a
regularizer steps the rate itself), ``on_epoch_end(epoch, metrics)`` then ``should_stop()``;
at the end ``finalize(model)`` returns the model to keep (early stopping restores the best weights)
and ``final_metrics(model)`` adds figures of its own to the summary (sgld's posterior predictive).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from regcore.regularizer_specs import RegularizerSpec


@dataclass
class TaskInfo:
    """What a regularizer may need to know about the problem before training starts."""

    task: str  # "classification" or "regression"
    num_classes: int  # 1 for regression
    in_features: int
    image_shape: tuple[int, int] | None  # (8, 8) for digits, None otherwise
    epochs: int
    steps_per_epoch: int
    device: torch.device


@dataclass
class Step:
    """State of the current optimization step, shared by the hooks of one step.

    ``y`` holds class indices (long) until a regularizer turns it into per-class target
    distributions (float, shape [B, K]); ``loss_fn(outputs, y)`` handles both.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: Any
    x: torch.Tensor
    y: torch.Tensor
    epoch: int
    index: int  # global step, from 0
    indices: torch.Tensor | None = None  # rows of the training split in this batch
    outputs: torch.Tensor | None = None
    data_loss: torch.Tensor | None = None
    scratch: dict[str, Any] = field(default_factory=dict)
    #: inputs without labels beside this batch (``data.n_unlabeled``), set only when a
    #: regularizer's ``reads_unlabeled`` asks for them
    unlabeled: torch.Tensor | None = None


class Regularizer:
    """Base class: every hook is a no-op. Subclasses override only what they need."""

    #: the parameter model this class implements (checked by the registry test)
    spec_class: ClassVar[type[RegularizerSpec]]
    #: True: the loop sets ``Step.unlabeled``, a batch of the unlabelled pool, at every step
    reads_unlabeled: ClassVar[bool] = False

    def __init__(self, spec: RegularizerSpec, task: TaskInfo):
        self.spec = spec
        self.task = task

    @property
    def name(self) -> str:
        return str(self.spec.name)  # type: ignore[attr-defined]

    # --- before training --------------------------------------------------------------------
    def bind_data(self, data: Any) -> None:
        """Called once with the run's ``regcore.data.Dataset`` (on its device), before
        ``configure_model``; for regularizers that need the training data itself."""

    def configure_model(self, model: nn.Module) -> nn.Module:
        """Insert modules (dropout masks, gates) into the model; return it."""
        return model

    def setup(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Called once the model is on its device and the optimizer exists."""

    # --- each step --------------------------------------------------------------------------
    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor, step: Step
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return x, y

    def before_forward(self, step: Step) -> None:
        pass

    def transform_loss(self, loss: torch.Tensor, step: Step) -> torch.Tensor:
        return loss

    def penalty(self, step: Step) -> torch.Tensor | None:
        """A term added to the loss; its mean per epoch is logged as ``penalty_<name>``."""
        return None

    def before_optimizer_step(self, step: Step) -> None:
        pass

    def after_optimizer_step(self, step: Step) -> None:
        pass

    # --- each epoch -------------------------------------------------------------------------
    def on_epoch_end(self, epoch: int, metrics: dict[str, float], model: nn.Module) -> None:
        pass

    def step_lr(self, epoch: int) -> bool:
        """Called at the end of each epoch, before the run's lr scheduler would step; return
        True when this regularizer set the next epoch's rate itself (swa's SWALR), and the run's
        scheduler is then not stepped."""
        return False

    def extra_metrics(self, model: nn.Module) -> dict[str, float]:
        """Metrics of this regularizer's own, recorded each epoch (e.g. kept-weight fraction)."""
        return {}

    def should_stop(self) -> bool:
        return False

    # --- at the end -------------------------------------------------------------------------
    def finalize(self, model: nn.Module) -> nn.Module:
        return model

    def best_epoch(self) -> int | None:
        """The epoch whose model ``finalize`` returns, when it is not the last."""
        return None

    def final_metrics(self, model: nn.Module) -> dict[str, float]:
        """Metrics of this regularizer's own for the summary, computed once on the model
        ``finalize`` returned (a posterior predictive beside that point estimate's figures)."""
        return {}

    # --- checkpointing: tensors go to safetensors, the rest to JSON -------------------------
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
