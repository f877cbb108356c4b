"""Which parameters count as weights (for penalties and metrics).

Following the catalog's convention, biases and normalization-layer parameters are not weights:
they are neither penalized by default nor counted in ``weight_l2``, ``weight_l1`` or ``sparsity``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.utils import parametrize

NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)


def classify_parameters(model: nn.Module) -> dict[str, str]:
    """Map each parameter name to ``"weight"``, ``"bias"``, ``"norm"`` or ``"aux"``.

    ``aux`` are a parametrization's own parameters (the gates of ``l0``): they shape a weight
    but are not one, so no penalty or weight metric counts them. The weight under a
    parametrization is its ``.original``.
    """
    kinds: dict[str, str] = {}
    for mod_name, module in model.named_modules():
        for p_name, _ in module.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if ".parametrizations." in f".{full}" and not full.endswith(".original"):
                kinds[full] = "aux"
            elif isinstance(module, NORM_TYPES):
                kinds[full] = "norm"
            elif p_name.endswith("bias"):
                kinds[full] = "bias"
            else:
                kinds[full] = "weight"
    return kinds


def named_penalized(
    model: nn.Module, exclude: Iterable[str] = ("bias", "norm"), trainable: bool = True
) -> list[tuple[str, nn.Parameter]]:
    """Weights, plus biases and norm parameters unless in ``exclude``, with their names.

    With ``trainable`` (the default) only parameters that require grad: a frozen body (a frozen
    fine-tune) is neither penalized nor edited in place by a regularizer."""
    skip = set(exclude) | {"aux"}
    kinds = classify_parameters(model)
    return [
        (n, p)
        for n, p in model.named_parameters()
        if kinds.get(n, "weight") not in skip and (p.requires_grad or not trainable)
    ]


def weights(model: nn.Module) -> list[torch.Tensor]:
    """The weight tensors, frozen or not: no biases, no norm-layer parameters."""
    return [p for _, p in named_penalized(model, trainable=False)]


def underlying_weight(module: nn.Module) -> torch.Tensor:
    """``module.weight``'s own parameter: under a parametrization (the gates of ``l0``),
    ``module.weight`` is recomputed on every access, and ``.original`` is what is trained."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original  # type: ignore[union-attr,return-value]
    return module.weight  # type: ignore[return-value]


def effective_weights(model: nn.Module) -> list[torch.Tensor]:
    """The weights as the forward pass uses them: a parametrized weight (``l0``'s gates) is the
    computed ``module.weight`` in the model's current mode (the deterministic gate in eval
    mode), not its ``.original``. For the weight metrics; penalties act on ``.original``."""
    out: list[torch.Tensor] = []
    for name, p in named_penalized(model, trainable=False):
        head, sep, attr = name.rpartition(".parametrizations.")
        if sep and attr.endswith(".original"):
            module = model.get_submodule(head)
            out.append(getattr(module, attr.removesuffix(".original")))
        else:
            out.append(p)
    return out
