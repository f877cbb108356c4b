"""Adversarial training: minimize αJ(x) + (1−α)J(x′) with x′ a worst-case input near x.

Goodfellow, Shlens & Szegedy (2015), "Explaining and harnessing adversarial examples" (FGSM,
x′ = x + ε·sign(∇ₓJ), and the mixed loss); Madry et al. (2018) for PGD (repeated signed steps
projected onto the L∞ ball of radius ε); SNU and TU Graz slides. Inputs are standardized, so x′
is not clamped to [0, 1] as image libraries do.

The attack differentiates with respect to the input only (``torch.autograd.grad``), so it leaves
the parameters' ``.grad`` untouched; its forward passes run in the model's current mode. PGD
starts from x itself (no random start). The term enters through the ``penalty`` hook as
(1−α)(J(x′) − J(x)), which makes the total αJ(x) + (1−α)J(x′) with J(x) the step's data loss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from regcore.models.bn import without_buffer_updates
from regcore.regularizer_specs import AdversarialSpec
from regcore.regularizers.base import Regularizer, Step

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Model = Callable[[torch.Tensor], torch.Tensor]


def _input_grad(model: Model, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_fn(model(x), y), x)
    return grad


def fgsm(
    model: Model, x: torch.Tensor, y: torch.Tensor, eps: float, loss_fn: LossFn
) -> torch.Tensor:
    """x + ε·sign(∇ₓ loss_fn(model(x), y)), detached."""
    return (x + eps * _input_grad(model, x, y, loss_fn).sign()).detach()


def pgd(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    loss_fn: LossFn,
    steps: int = 5,
    step_size: float | None = None,
) -> torch.Tensor:
    """``steps`` signed-gradient ascent steps of ``step_size`` (default 2.5·ε/steps) from x, each
    followed by projection onto the L∞ ball ‖x′ − x‖∞ ≤ ε; detached."""
    size = 2.5 * eps / steps if step_size is None else step_size
    x0 = x.detach()
    adv = x0
    for _ in range(steps):
        adv = adv + size * _input_grad(model, adv, y, loss_fn).sign()
        adv = x0 + (adv - x0).clamp(-eps, eps)
    return adv.detach()


class Adversarial(Regularizer):
    spec_class = AdversarialSpec
    spec: AdversarialSpec

    def attack(
        self, model: Model, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn
    ) -> torch.Tensor:
        s = self.spec
        if s.method == "fgsm":
            return fgsm(model, x, y, s.epsilon, loss_fn)
        return pgd(model, x, y, s.epsilon, loss_fn, s.steps, s.step_size)

    def penalty(self, step: Step) -> torch.Tensor | None:
        if self.spec.alpha == 1.0 or step.data_loss is None:
            return None
        # the attack's passes and the adversarial forward leave batch-norm statistics alone:
        # only the clean batch's forward moves them
        f = without_buffer_updates(step.model)
        x_adv = self.attack(f, step.x, step.y, step.loss_fn)
        adv_loss = step.loss_fn(f(x_adv), step.y)
        return (1.0 - self.spec.alpha) * (adv_loss - step.data_loss)
