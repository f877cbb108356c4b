"""What a run returns (``RunResult``), how it fails (``Divergence``) and its ``summary.json``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunResult:
    status: str  # succeeded, failed, cancelled
    epochs_run: int  # full passes over the training set
    best_epoch: int | None
    metrics: dict[str, float]
    reason: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    #: what ran (``regcore.provenance.environment``), set by ``regcore.experiment.run``
    environment: dict[str, Any] | None = None
    #: optimizer steps taken, set under a ``train.steps`` budget (its points are step numbers)
    steps_run: int | None = None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status,
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "metrics": self.metrics,
            "timings": self.timings,
        }
        if self.steps_run is not None:
            out["steps_run"] = self.steps_run
        if self.reason:
            out["reason"] = self.reason
        if self.environment is not None:
            out["environment"] = self.environment
        return out


class Divergence(RuntimeError):
    """The loss became NaN or infinite; retrying cannot help."""


def write_summary(workdir: Path, summary: dict[str, Any]) -> None:
    """``summary.json``, written under a temporary name and renamed: never half a file."""
    path = Path(workdir) / "summary.json"
    tmp = path.with_name(".summary.json.tmp")
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, path)
