"""How a run talks to whoever drives it: the CLI shows progress, the worker persists metrics."""

from __future__ import annotations

from typing import Any, Protocol

from regcore.training.checkpoint import CheckpointInfo


class Reporter(Protocol):
    def on_start(self, info: dict[str, Any]) -> None:
        """Once, before the first epoch: epochs, start_epoch (> 0 on resume), device, threads."""

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """After each epoch, with every metric of that epoch."""

    def on_checkpoint(self, info: CheckpointInfo) -> None:
        """After a checkpoint's files are complete on disk."""

    def should_cancel(self) -> bool:
        """Asked between steps; True stops the run within the epoch, status ``cancelled``."""
        ...


class NullReporter:
    def on_start(self, info: dict[str, Any]) -> None:
        pass

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        pass

    def on_checkpoint(self, info: CheckpointInfo) -> None:
        pass

    def should_cancel(self) -> bool:
        return False
