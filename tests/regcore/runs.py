"""Helpers for tests that train a tiny seeded model and look at what it did."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from regcore.experiment import run as run_experiment
from regcore.spec import ExperimentSpec, parse_spec
from regcore.training.context import RunContext
from regcore.training.loop import Trainer
from regcore.training.result import RunResult


def make_spec(*, local: bool = False, **overrides: Any) -> ExperimentSpec:
    """A small MNIST-1D MLP spec; keyword arguments replace top-level sections.

    ``local`` parses it as ``reglab run`` does, where file paths are allowed.
    """
    base: dict[str, Any] = {
        "name": "test",
        "seed": 0,
        "data": {"name": "mnist1d", "n_train": 500, "n_val": 200, "n_test": 500},
        "model": {"name": "mlp", "hidden": [64]},
        "train": {"optimizer": "sgd", "lr": 0.1, "batch_size": 50, "epochs": 5, "device": "cpu"},
        "regularizers": [],
    }
    base.update(overrides)
    return parse_spec(base, local=local)


def train(spec: ExperimentSpec, tmp_path: Path, cache_dir: Path, **kwargs: Any) -> RunResult:
    """Run ``spec`` to the end with checkpoints off (unless asked for)."""
    kwargs.setdefault("checkpoint_every", 0)
    return run_experiment(spec, workdir=tmp_path, cache_dir=cache_dir, threads=1, **kwargs)


def trainer(spec: ExperimentSpec, tmp_path: Path, cache_dir: Path) -> Trainer:
    """A Trainer built but not run, to inspect its model, data and regularizers."""
    return Trainer(
        RunContext.build(spec, tmp_path, cache_dir=cache_dir, threads=1, checkpoint_every=0)
    )


def history(workdir: Path) -> dict[str, list[float]]:
    """metrics.jsonl as {key: [value at epoch 1, 2, ...]}."""
    out: dict[str, list[float]] = {}
    for line in (workdir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out.setdefault(rec["key"], []).append(rec["value"])
    return out
