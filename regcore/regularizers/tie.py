"""Parameter tying: λ‖w − w_ref‖² pulls the weights toward a reference.

SNU slides [K] "parameter tying"; with a pretrained reference this is L2-SP (Li et al. 2018).
``w_ref`` is the model's own initial weights (captured in ``setup``, after every
``configure_model``) or a checkpoint: a safetensors file of the model's state_dict, loaded with
safetensors only (no pickle). Biases and normalization parameters are untied by default, as in l2.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from regcore.data.references import reference_file
from regcore.models.params import named_penalized
from regcore.regularizer_specs import TieSpec
from regcore.regularizers.base import Regularizer, Step


def tie_penalty(
    params: Sequence[torch.Tensor], refs: Sequence[torch.Tensor], strength: float
) -> torch.Tensor:
    """λΣ‖w − w_ref‖² over matching tensors."""
    terms = [(p - r).pow(2).sum() for p, r in zip(params, refs, strict=True)]
    return strength * torch.stack(terms).sum() if terms else torch.zeros(())


def load_reference(path: str | Path, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """The tensors ``names`` from a safetensors state_dict. The error names only the model's
    own tensors: never what the file holds (another run's names) nor the path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError("tie.reference: the reference checkpoint is not available")
    tensors = load_file(str(path))
    missing = [n for n in names if n not in tensors]
    if missing:
        raise KeyError(
            f"tie.reference lacks {len(missing)} of the model's tensors "
            f"({missing[:5]}{'...' if len(missing) > 5 else ''}): it is not a checkpoint of "
            "this model"
        )
    return {n: tensors[n] for n in names}


class Tie(Regularizer):
    spec_class = TieSpec
    spec: TieSpec

    cache_dir: Path | None = None

    def bind_data(self, data: Any) -> None:
        self.cache_dir = data.extras.get("cache_dir")

    def setup(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        named = named_penalized(model, self.spec.exclude)
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        if self.spec.reference is None:
            self.refs = [p.detach().clone() for p in self.params]
        else:
            path = reference_file(self.spec.reference, self.cache_dir)
            loaded = load_reference(path, self.names)
            self.refs = []
            for n, p in named:
                ref = loaded[n]
                if ref.shape != p.shape:
                    raise ValueError(
                        f"tie.reference: {n} has shape {tuple(ref.shape)}, the model's is "
                        f"{tuple(p.shape)}"
                    )
                self.refs.append(ref.to(device=p.device, dtype=p.dtype))

    def penalty(self, step: Step) -> torch.Tensor:
        return tie_penalty(self.params, self.refs, self.spec.strength)

    def extra_metrics(self, model: nn.Module) -> dict[str, float]:
        """``tie_distance``: ‖w − w_ref‖ over the tied tensors."""
        with torch.no_grad():
            sq = sum(
                float((p - r).pow(2).sum()) for p, r in zip(self.params, self.refs, strict=True)
            )
        return {"tie_distance": sq**0.5}

    # the reference is part of the run's state: a resumed run must tie to the same weights
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"ref.{n}": r for n, r in zip(self.names, self.refs, strict=True)}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.refs = [
                state[f"ref.{n}"].to(device=r.device, dtype=r.dtype)
                for n, r in zip(self.names, self.refs, strict=True)
            ]
