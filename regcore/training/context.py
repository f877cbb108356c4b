"""What a run is built from, resolved once: its spec, device, dataset, reporter and work dir.

``RunContext.build`` resolves the device and builds the dataset (on that device); every engine
(``Trainer``, ``EnsembleRun``, ``BatchedEnsembleRun``, the self-supervised stage) takes a
context instead of building its own, and a run's stages and members take ``ctx.stage(...)``:
the same context with what differs (a member's spec and resample, a stage's reporter, work dir
or data) replaced.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from regcore.data import Dataset, build_dataset
from regcore.spec import ExperimentSpec
from regcore.training.device import resolve_device
from regcore.training.reporter import NullReporter, Reporter


@dataclass(frozen=True)
class RunContext:
    spec: ExperimentSpec
    workdir: Path
    device: torch.device
    data: Dataset
    reporter: Reporter = dataclasses.field(default_factory=NullReporter)
    #: where a worker put fetched inputs (references, uploads); datasets are cached there
    cache_dir: Path | None = None
    #: CPU threads; None: the engine chooses (one for small models)
    threads: int | None = None
    #: checkpoints every this many evaluations (and at the end); 0: none
    checkpoint_every: int = 1

    @classmethod
    def build(
        cls,
        spec: ExperimentSpec,
        workdir: Path,
        *,
        device: str | torch.device | None = None,
        reporter: Reporter | None = None,
        cache_dir: Path | None = None,
        threads: int | None = None,
        checkpoint_every: int = 1,
        data: Dataset | None = None,
    ) -> RunContext:
        """The context of ``spec``: ``device`` (default the spec's ``train.device``) resolved,
        ``data`` (default the spec's dataset, built here) moved onto it."""
        dev = resolve_device(device or spec.train.device)
        if data is None:
            data = build_dataset(spec.data, spec.seed, cache_dir)
        return cls(
            spec,
            Path(workdir),
            dev,
            data.to(dev),
            reporter or NullReporter(),
            cache_dir,
            threads,
            checkpoint_every,
        )

    def stage(self, **changes: Any) -> RunContext:
        """This context with ``changes`` (fields by name) replaced."""
        return dataclasses.replace(self, **changes)

    @property
    def checkpoint_dir(self) -> Path:
        return self.workdir / "checkpoints"
