"""The trained model back from a checkpoint: ``load_model(spec, "best.safetensors")``.

The checkpoint is the safetensors weights file a run writes (``OUT/checkpoints/best.safetensors``)
or the API serves (``reglab download ID``); nothing is unpickled. The model is rebuilt from the
spec exactly as training built it (the architecture, then each regularizer's change to it, e.g.
dropout slots or l0 gates), the weights are loaded strictly, and it is returned in eval mode::

    import json, regcore, torch
    spec = json.load(open("spec.json"))              # or GET /v1/experiments/{id} ["spec"]
    model = regcore.load_model(spec, "best.safetensors")
    logits = model(torch.randn(5, 40))

An ensemble's checkpoint (members under ``member{i}.``) comes back as the combined ensemble.
Datasets whose shape the spec does not fix (``file``, ``upload``) need ``in_features`` and
``out_features``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from regcore.safetensors_check import validate_safetensors
from regcore.spec import DATASET_FEATURES, DATASET_OUTPUTS, ExperimentSpec, parse_spec

_MEMBER = re.compile(r"^member(\d+)\.(.+)$")


class CheckpointMismatch(ValueError):
    """The checkpoint's tensors are not those of the model the spec describes."""


def load_model(
    spec: ExperimentSpec | dict[str, Any],
    checkpoint: str | Path,
    *,
    in_features: int | None = None,
    out_features: int | None = None,
) -> nn.Module:
    """The model of ``spec`` with the weights in ``checkpoint`` (safetensors), on CPU, in eval
    mode. Raises :class:`CheckpointMismatch` naming missing/unexpected tensors."""
    from safetensors.torch import load_file

    if not isinstance(spec, ExperimentSpec):
        spec = parse_spec(spec)
    validate_safetensors(Path(checkpoint))
    tensors = load_file(str(checkpoint), device="cpu")
    fin, fout = _dims(spec, in_features, out_features)
    members: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        m = _MEMBER.match(key)
        if m:
            members.setdefault(int(m.group(1)), {})[m.group(2)] = value
    if members:
        from regcore.ensemble.combine import Ensemble

        specs = spec.member_specs()
        models = [
            _loaded(specs[min(i, len(specs) - 1)], fin, fout, members[i], f"member{i}.")
            for i in sorted(members)
        ]
        model: nn.Module = Ensemble(models, spec.ensemble.combine, _task(spec, fout))
    else:
        model = _loaded(spec, fin, fout, tensors, "")
    return model.eval()


def _task(spec: ExperimentSpec, fout: int) -> str:
    return "regression" if spec.data.name == "toy1d" or fout == 1 else "classification"


def _dims(spec: ExperimentSpec, fin: int | None, fout: int | None) -> tuple[int, int]:
    fin = fin or DATASET_FEATURES.get(spec.data.name)
    fout = fout or DATASET_OUTPUTS.get(spec.data.name)
    if fin is None or fout is None:
        raise ValueError(
            f"data {spec.data.name!r} does not fix the model's shape: pass in_features and "
            "out_features"
        )
    return fin, fout


def _built(spec: ExperimentSpec, fin: int, fout: int) -> nn.Module:
    """The model as training built it: architecture, then each regularizer's change."""
    from regcore.models import build_model
    from regcore.regularizers.base import TaskInfo
    from regcore.regularizers.registry import build_regularizers

    model: nn.Module = build_model(spec.model, fin, fout)
    kind = _task(spec, fout)
    task = TaskInfo(
        task=kind,
        num_classes=1 if kind == "regression" else fout,
        in_features=fin,
        image_shape=(8, 8) if spec.data.name == "digits" else None,
        epochs=spec.train.epochs,
        steps_per_epoch=1,
        device=torch.device("cpu"),
    )
    for reg in build_regularizers(spec.regularizers, task):
        model = reg.configure_model(model)
    if spec.multitask is not None:  # the auxiliary head is saved with the model (multitask.py)
        model.add_module("aux_head", nn.Linear(model.head().in_features, 1))  # type: ignore[operator]
    return model


def _loaded(
    spec: ExperimentSpec, fin: int, fout: int, tensors: dict[str, torch.Tensor], prefix: str
) -> nn.Module:
    model = _built(spec, fin, fout)
    try:
        result = model.load_state_dict(tensors, strict=False)
    except RuntimeError as err:  # a tensor of another shape: another architecture
        raise CheckpointMismatch(f"the checkpoint does not fit the spec's model: {err}") from None
    if result.missing_keys or result.unexpected_keys:
        missing = ", ".join(prefix + k for k in result.missing_keys[:5])
        extra = ", ".join(prefix + k for k in result.unexpected_keys[:5])
        raise CheckpointMismatch(
            f"the checkpoint does not fit the spec's model: missing [{missing}], "
            f"unexpected [{extra}]"
        )
    return model
