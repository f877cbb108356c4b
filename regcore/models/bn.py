"""Extra forward passes that must leave batch-norm running statistics alone.

An adversarial attack, a Jacobian or tangent penalty runs the model again on the step's batch
(or a perturbed copy); in training mode each of those passes would move the running statistics,
counting the batch twice or folding perturbed inputs into what eval mode normalizes with.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def without_buffer_updates(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``model`` as a function whose forward leaves the model's buffers alone.

    A training-mode batch norm updates its running statistics in place, which ``torch.func``
    refuses inside a transform (and the extra pass would count the batch twice besides). The
    buffers are cloned inside the function, so the updates land on the copies; the batch
    statistics still normalize, so the output (and its gradient in the parameters, which are
    the model's own) is that of the function the data loss sees.
    """
    buffers = dict(model.named_buffers())
    if not buffers:
        return model

    def f(x: torch.Tensor) -> torch.Tensor:
        copies = {k: b.clone() for k, b in buffers.items()}
        return torch.func.functional_call(model, copies, (x,))

    return f
