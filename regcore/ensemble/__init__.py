"""Ensembles on the single-run Trainer: members, bagging, vary, snapshots, batched training."""

from __future__ import annotations

from regcore.ensemble.combine import Ensemble, combine_outputs, error_decomposition

__all__ = ["Ensemble", "combine_outputs", "error_decomposition"]
