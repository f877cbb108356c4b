"""Sharpness-aware minimization (Foret et al. 2021, "Sharpness-aware minimization for
efficiently improving generalization").

SAM minimizes max_{‖e‖≤ρ} L(w + e). To first order the maximizer is e = ρ·g/‖g‖ with g = ∇L(w),
and the update descends ∇L(w + e) (the term through e's dependence on w is dropped, as in the
paper). One step here: the loop's backward gives g; ``before_optimizer_step`` moves the weights
to w + e, recomputes the data loss and its gradient there with the step's own model, batch and
loss function, restores w and leaves that gradient for ``optimizer.step()``.

Penalties of other regularizers (l2, ...) are not re-evaluated at w + e: their gradient at w is
kept, g_final = ∇L_data(w + e) + (g − ∇L_data(w)), where ∇L_data(w) is taken in
``transform_loss`` (one extra backward over the data loss); when no other regularizer adds a
penalty, g = ∇L_data(w) and that backward is skipped. The ascent direction uses the full g. A
loss transform (flooding) is refused with sam by the spec: its gradient at w + e would need
the transform re-applied there.
Batch-norm running statistics are frozen during the second pass so the perturbed weights leave
no trace in them. Effect: a lower top Hessian eigenvalue (``sharpness``) than SGD from the same
start.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from regcore.regularizer_specs import SAMSpec
from regcore.regularizers.base import Regularizer, Step


def ascent_step(grads: list[torch.Tensor], rho: float) -> list[torch.Tensor]:
    """e = ρ·g/‖g‖ (the global norm over every tensor of g)."""
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    scale = rho / (norm + 1e-12)
    return [g * scale for g in grads]


class SAM(Regularizer):
    spec_class = SAMSpec
    spec: SAMSpec

    #: the loop's per-hook regularizer lists (set by the Trainer); None: assume other terms
    peer_hooks: dict[str, list[Regularizer]] | None = None

    def setup(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def _others_change_loss(self) -> bool:
        """Whether the loss differs from the data loss (another penalty or transform)."""
        if self.peer_hooks is None:
            return True
        hooks = self.peer_hooks
        return any(r is not self for h in ("penalty", "transform_loss") for r in hooks[h])

    def transform_loss(self, loss: torch.Tensor, step: Step) -> torch.Tensor:
        if not self._others_change_loss():
            return loss
        grads = torch.autograd.grad(loss, self.params, retain_graph=True, allow_unused=True)
        step.scratch["sam_data_grads"] = [
            torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads, strict=True)
        ]
        return loss

    def data_grads_at_w(self, step: Step) -> dict[int, torch.Tensor] | None:
        """∇L_data(w) by parameter id, as ``transform_loss`` took it; None when no other term
        is in the loss (g is ∇L_data(w) itself)."""
        at_w = step.scratch.pop("sam_data_grads", None)
        return None if at_w is None else dict(zip(map(id, self.params), at_w, strict=True))

    @contextmanager
    def away_from_w(self, params: list[torch.Tensor]) -> Iterator[None]:
        """Inside, the weights may move (and forward passes run) with the batch-norm running
        statistics frozen; on leaving, w is restored exactly (a copy, not by undoing the moves)."""
        saved = [p.detach().clone() for p in params]
        momenta = [m.momentum for m in self.norms]
        for m in self.norms:
            m.momentum = 0.0
        try:
            yield
        finally:
            for m, mom in zip(self.norms, momenta, strict=True):
                m.momentum = mom
            with torch.no_grad():
                for p, w in zip(params, saved, strict=True):
                    p.copy_(w)

    def before_optimizer_step(self, step: Step) -> None:
        params: list[torch.Tensor] = [p for p in self.params if p.grad is not None]
        if not params:
            return
        # no other term: g is ∇L_data(w) itself and g_final = ∇L_data(w + e)
        data_at_w = self.data_grads_at_w(step)
        # the .grad tensors themselves: the in-place edits below land in p.grad
        total = [p.grad for p in params if p.grad is not None]
        eps = ascent_step(total, self.spec.rho)
        with self.away_from_w(params):
            with torch.no_grad():
                torch._foreach_add_(params, eps)
            with torch.enable_grad():
                loss = step.loss_fn(step.model(step.x), step.y)
                at_w_eps = torch.autograd.grad(loss, params, allow_unused=True)
        with torch.no_grad():
            for p, grad, g_eps in zip(params, total, at_w_eps, strict=True):
                if data_at_w is None:
                    grad.zero_()
                else:
                    grad.sub_(data_at_w[id(p)])
                if g_eps is not None:
                    grad.add_(g_eps)
