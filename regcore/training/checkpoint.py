"""Checkpoints: weights in safetensors, training state in safetensors, and a JSON sidecar.

A checkpoint named ``last`` is three files in ``checkpoints/``:

* ``last.safetensors``: the model's state_dict (what users download and load);
* ``last.state.safetensors``: optimizer, scheduler, RNG and regularizer tensors;
* ``last.json``: epoch, metrics, spec hash, the non-tensor training state, and the sha256 of both
  files. It is written last, so a checkpoint whose sidecar is missing or whose hashes don't
  match was cut short and is ignored.

Every file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from regcore.safetensors_check import InvalidSafetensors, validate_safetensors
from regcore.training.state import flatten, unflatten

FORMAT = "reglab-checkpoint/1"


@dataclass
class CheckpointInfo:
    kind: str  # "best" or "last"
    epoch: int
    weights: Path
    state: Path
    sidecar: Path
    sha256: str  # of the weights file
    size: int  # of the weights file, bytes
    metrics: dict[str, float]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)


def save_checkpoint(
    directory: Path,
    kind: str,
    epoch: int,
    model_state: dict[str, torch.Tensor],
    train_state: dict[str, Any],
    metrics: dict[str, float],
    spec_hash: str,
) -> CheckpointInfo:
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / f"{kind}.safetensors"
    state = directory / f"{kind}.state.safetensors"
    sidecar = directory / f"{kind}.json"
    model_tensors = {k: v.detach().cpu().contiguous() for k, v in model_state.items()}
    state_tensors: dict[str, torch.Tensor] = {}
    skeleton = flatten(train_state, state_tensors)
    meta = {"format": FORMAT, "kind": kind, "epoch": str(epoch), "spec_hash": spec_hash}
    _atomic_write(weights, lambda p: save_file(model_tensors, str(p), metadata=meta))
    _atomic_write(state, lambda p: save_file(state_tensors, str(p), metadata=meta))
    digest = sha256_file(weights)
    side = {
        "format": FORMAT,
        "kind": kind,
        "epoch": epoch,
        "spec_hash": spec_hash,
        "metrics": metrics,
        "weights_sha256": digest,
        "state_sha256": sha256_file(state),
        "train_state": skeleton,
    }
    _atomic_write(sidecar, lambda p: p.write_text(json.dumps(side, allow_nan=True)))
    return CheckpointInfo(
        kind, epoch, weights, state, sidecar, digest, weights.stat().st_size, metrics
    )


@dataclass
class LoadedCheckpoint:
    epoch: int
    model_state: dict[str, torch.Tensor]
    train_state: dict[str, Any]
    metrics: dict[str, float]


def load_checkpoint(
    directory: Path, kind: str, spec_hash: str | None = None
) -> LoadedCheckpoint | None:
    """The checkpoint ``kind`` in ``directory``; None when absent, incomplete or of another spec."""
    sidecar = directory / f"{kind}.json"
    weights = directory / f"{kind}.safetensors"
    state = directory / f"{kind}.state.safetensors"
    if not (sidecar.exists() and weights.exists() and state.exists()):
        return None
    try:
        side = json.loads(sidecar.read_text())
    except json.JSONDecodeError:
        return None
    if side.get("format") != FORMAT or (spec_hash and side.get("spec_hash") != spec_hash):
        return None
    # Only safetensors is ever read, and only after its header checks out (no pickle fallback).
    try:
        validate_safetensors(weights)
        validate_safetensors(state)
    except InvalidSafetensors:
        return None
    if sha256_file(weights) != side["weights_sha256"] or sha256_file(state) != side["state_sha256"]:
        return None
    state_tensors = load_file(str(state))
    return LoadedCheckpoint(
        epoch=int(side["epoch"]),
        model_state=load_file(str(weights)),
        train_state=unflatten(side["train_state"], state_tensors),
        metrics=side.get("metrics", {}),
    )
