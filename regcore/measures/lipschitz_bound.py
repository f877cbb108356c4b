"""An upper bound on the network's Lipschitz constant: Π_l σ_max(W_l).

For a chain of linear maps and 1-Lipschitz activations (ReLU, tanh, ...), the product of the
layers' spectral norms bounds the Lipschitz constant (Szegedy et al. 2014; Gouk et al. 2021).
Convolution kernels [out, in, k] are reshaped to [out, in·k] matrices, as in spectral
normalization (Miyato et al. 2018): a proxy for, not the exact operator norm of, the convolution.
Batch norm's scaling and attention are not included, so for those models the number is a
weight-size statistic rather than a bound.
"""

from __future__ import annotations

import torch
from torch import nn


def spectral_norm(weight: torch.Tensor) -> torch.Tensor:
    """σ_max of ``weight`` seen as a matrix [out, rest]."""
    return torch.linalg.matrix_norm(weight.reshape(weight.shape[0], -1), ord=2)


def weight_matrices(model: nn.Module) -> list[torch.Tensor]:
    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d)
    return [m.weight for m in model.modules() if isinstance(m, kinds)]


@torch.no_grad()
def lipschitz_bound(model: nn.Module) -> float:
    norms = [spectral_norm(w.detach()) for w in weight_matrices(model)]
    return float(torch.stack(norms).prod()) if norms else 0.0
