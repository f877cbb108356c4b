"""Moving a pretrained body into a fresh model, and fine-tuning it frozen or at a lower lr.

The body is every parameter but the output layer's (``model.head()``); the head is new for the
target unless asked otherwise (Yosinski et al. 2014; Prince §9.3.6).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from regcore.regularizers.base import Regularizer
from regcore.training.loop import Trainer
from regcore.training.optim import build_scheduler


def head_prefix(model: nn.Module) -> str:
    head = model.head()  # type: ignore[operator]
    name = next(n for n, m in model.named_modules() if m is head)
    return name + "."


def body_state(model: nn.Module) -> dict[str, torch.Tensor]:
    prefix = head_prefix(model)
    return {k: v for k, v in model.state_dict().items() if not k.startswith(prefix)}


def load_body(dst: nn.Module, src: nn.Module, keep_head: bool = False) -> None:
    """Copy ``src``'s body (and head, with ``keep_head``) into ``dst``; shapes must match."""
    state = src.state_dict() if keep_head else body_state(src)
    own = dst.state_dict()
    for k, v in state.items():
        if k not in own or own[k].shape != v.shape:
            raise ValueError(
                f"pretrained parameter {k} {tuple(v.shape)} does not fit the target model "
                f"({tuple(own[k].shape) if k in own else 'absent'}); source and target need the "
                "same input size and architecture"
            )
    dst.load_state_dict(state, strict=False)


def body_parameters(model: nn.Module) -> list[nn.Parameter]:
    head = {id(p) for p in model.head().parameters()}  # type: ignore[operator]
    return [p for p in model.parameters() if id(p) not in head]


def regroup(trainer: Trainer, freeze: bool, body_lr_scale: float) -> None:
    """Rebuild the optimizer: the head at the spec's lr, the body frozen or at lr · scale."""
    model = trainer.model
    body = body_parameters(model)
    if freeze:
        for p in body:
            p.requires_grad_(False)
    old = trainer.optimizer
    groups: list[dict[str, Any]] = [{"params": list(model.head().parameters())}]  # type: ignore[operator]
    if not freeze:
        groups.append({"params": body, "lr": old.defaults["lr"] * body_lr_scale})
    trainer.optimizer = type(old)(groups, **old.defaults)
    trainer.scheduler = build_scheduler(trainer.optimizer, trainer.spec.train)
    for reg in trainer.regs:  # those that hold the optimizer or the trainable parameters
        if type(reg).setup is not Regularizer.setup:
            reg.setup(model, trainer.optimizer)


class PrefixReporter:
    """Reports a stage's epochs under ``<prefix><key>``; checkpoints of the stage stay private."""

    def __init__(self, reporter: Any, prefix: str):
        self.reporter = reporter
        self.prefix = prefix

    def on_start(self, info: dict[str, Any]) -> None:
        self.reporter.on_start({**info, "stage": self.prefix.rstrip("_")})

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self.reporter.on_epoch(epoch, {self.prefix + k: v for k, v in metrics.items()})

    def on_checkpoint(self, info: Any) -> None:
        pass

    def should_cancel(self) -> bool:
        return bool(self.reporter.should_cancel())
