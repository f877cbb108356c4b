"""Max-norm constraint: each unit's incoming weight vector is renormed to ‖w‖ ≤ c after every step.

Srivastava et al. 2014, "Dropout", §5.1 (max-norm regularization, typically c = 3-4); Goodfellow
et al. 2016 §7.2. A projection, not a penalty: rows of ``nn.Linear`` weights (one per output
unit) and, for convolutions, each output channel's whole kernel. Rows already inside the ball
are left as they are.

Under ``l0``'s gates the constraint applies to the underlying weight (the parametrization's
``.original``), not to the gated product W∘z: the gates only shrink a row (z ∈ [0, 1]), so the
effective row stays inside the ball too. Frozen weights (``requires_grad`` off, a frozen
fine-tune's body) are left alone.
"""

from __future__ import annotations

import torch
from torch import nn

from regcore.models.params import underlying_weight
from regcore.regularizer_specs import MaxNormSpec
from regcore.regularizers.base import Regularizer, Step

CONSTRAINED = (nn.Linear, nn.Conv1d, nn.Conv2d)


def max_norm(w: torch.Tensor, c: float) -> torch.Tensor:
    """``w`` with every slice along dim 0 scaled to an L2 norm of at most ``c``."""
    # torch.renorm divides by (norm + 1e-7), so a projected row lands just inside c, never above
    return torch.renorm(w, p=2, dim=0, maxnorm=c)


class MaxNorm(Regularizer):
    spec_class = MaxNormSpec
    spec: MaxNormSpec

    def setup(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        ws = [underlying_weight(m) for m in model.modules() if isinstance(m, CONSTRAINED)]
        self.weights = [w for w in ws if w.requires_grad]

    @torch.no_grad()
    def after_optimizer_step(self, step: Step) -> None:
        for w in self.weights:
            w.renorm_(2, 0, self.spec.c)
