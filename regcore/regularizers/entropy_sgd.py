"""Entropy-SGD (Chaudhari et al. 2017, "Entropy-SGD: biasing gradient descent into wide valleys";
Prince ch. 9, its notes).

Entropy-SGD descends the local entropy F(w; γ) = log ∫ exp(−f(w′) − (γ/2)‖w − w′‖²) dw′ instead
of the loss f: a minimum is good when a whole neighbourhood of scope 1/γ is low, not just the point.
Its gradient is −∇F = γ(w − ⟨w′⟩), ⟨w′⟩ the mean of the Gibbs measure above, which an inner loop of
L Langevin steps estimates (Algorithm 1 of the paper):

    w′ ← w, μ ← w
    repeat L times:   dw′ = ∇f_B(w′) − γ(w − w′)        (B: a fresh minibatch each time)
                      w′ ← w′ − η′·dw′ + √η′·ε·N(0, I)
                      μ ← (1 − α)·μ + α·w′
    gradient for the optimizer: γ(w − μ)

and "scoping" grows γ = γ₀(1 + γ₁)^t over the optimizer steps t, so the scope narrows from wide
valleys toward the minimum as training goes on. Here the loop's own step is the outer update: the
optimizer (its lr, momentum) applies γ(w − μ), with the weights w restored exactly after the inner
loop. The inner minibatches are drawn (global RNG, in the checkpoints) from the raw training split,
with the batch size of the step: other regularizers' batch transforms shape the outer step only.
The inner loop follows the data loss; penalties of other regularizers (l2, ...) keep their gradient
at w, g_final = γ(w − μ) + (g − ∇f_B(w)), ∇f_B(w) taken in ``transform_loss`` (an extra backward,
skipped when nothing else changes the loss, as in ``sam``); flooding is refused beside it by the
spec. Batch-norm running statistics are frozen during the inner loop. Cost: L extra forward and
backward passes a step.

The defaults are the paper's (L 20, γ₀ 0.03, γ₁ 1e-3, η′ 0.1, ε 1e-4, α 0.75); the paper's outer
rate is η = 1, and γ(w − μ) is only about γ·η′·L of a gradient, so ``train.lr`` near 1 is its
regime. Effect (tests/regcore/regularizers/test_entropy_sgd.py, MNIST-1D, 200 examples, MLP 64,
L 20, γ 0.1, ε 0.1, lr 1, 15 epochs): a wider valley than plain SGD (lr 0.1, 26 epochs) at a lower
training loss (0.87 vs 0.97): the training loss rises 0.097 vs 0.109 (seed 0), 0.093 vs 0.105
(seed 1) under N(0, 0.05²) weight noise. The top Hessian eigenvalue (``sharpness``) does not show
it (3.97 vs 3.05 at seed 1): the valley is wide on average, not along its sharpest direction. With
the paper's ε = 1e-4 the inner loop is deterministic on this problem and entropy_sgd matches SGD at
equal loss (0.116 vs 0.117): the thermal noise is what explores the valley.
"""

from __future__ import annotations

import math

import torch

from regcore.data import Dataset
from regcore.regularizer_specs import EntropySGDSpec
from regcore.regularizers.base import Step
from regcore.regularizers.sam import SAM


class EntropySGD(SAM):
    """Shares ``sam``'s handling of the other terms of the loss (``transform_loss``: the data
    gradient at w when a penalty is present) and replaces the step."""

    spec_class = EntropySGDSpec  # type: ignore[assignment]
    spec: EntropySGDSpec  # type: ignore[assignment]

    def bind_data(self, data: Dataset) -> None:
        self.train_x, self.train_y = data.train.x, data.train.y

    def gamma(self, step_index: int) -> float:
        """γ₀·(1 + scoping)^t: the scope after ``step_index`` optimizer steps."""
        return self.spec.gamma * math.exp(step_index * math.log1p(self.spec.scoping))

    def before_optimizer_step(self, step: Step) -> None:
        params: list[torch.Tensor] = [p for p in self.params if p.grad is not None]
        if not params:
            return
        data_at_w = self.data_grads_at_w(step)
        s = self.spec
        gamma = self.gamma(step.index)
        w = [p.detach().clone() for p in params]
        mean = [p.clone() for p in w]
        n, batch = len(self.train_y), step.x.shape[0]
        with self.away_from_w(params):
            for _ in range(s.inner_steps):
                rows = torch.randint(n, (batch,), device=self.train_x.device)
                with torch.enable_grad():
                    loss = step.loss_fn(step.model(self.train_x[rows]), self.train_y[rows])
                    grads = torch.autograd.grad(loss, params, allow_unused=True)
                with torch.no_grad():
                    for p, g, anchor, mu in zip(params, grads, w, mean, strict=True):
                        drift = gamma * (p - anchor) if g is None else g + gamma * (p - anchor)
                        p.sub_(s.inner_lr * drift)
                        if s.noise:
                            p.add_(torch.randn_like(p), alpha=math.sqrt(s.inner_lr) * s.noise)
                        mu.mul_(1 - s.alpha).add_(p, alpha=s.alpha)
        with torch.no_grad():
            for p, anchor, mu in zip(params, w, mean, strict=True):
                assert p.grad is not None
                others = (p.grad - data_at_w[id(p)]) if data_at_w is not None else None
                p.grad.copy_(gamma * (anchor - mu))
                if others is not None:
                    p.grad.add_(others)
