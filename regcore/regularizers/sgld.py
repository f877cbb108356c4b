"""Stochastic gradient Langevin dynamics (Welling & Teh 2011, "Bayesian learning via stochastic
gradient Langevin dynamics"); Prince §9.3.5 and its notes (MCMC, cold posteriors).

The posterior Pr(φ|D) ∝ Pr(φ)·Πᵢ Pr(yᵢ|xᵢ, φ) (eq. 9.11) is sampled by SGD steps with Gaussian
noise. With U(φ) = −log Pr(φ|D) = N·(mean data loss + λΣw²), λ = 1/(2·N·σ²_prior)
(``regcore/bayes/prior.py``), Welling & Teh's step φ ← φ − (ε/2)∇U + η, η ~ N(0, ε·I), is with
ε = 2·lr/N exactly the run's SGD step on the mean loss plus the prior's penalty, followed by
η ~ N(0, 2·lr·T/N) on every trainable parameter. T is the temperature of Pr(φ|D)^(1/T): T = 1 is
the posterior, T < 1 a "cold" one (Wenzel et al. 2020), which the notes report predicts better.
The step size is the run's lr at each step (a schedule anneals it, as the paper's does).

1. Burn-in: ``burn_in`` epochs (or steps; default half the run) of SGD on the same objective
   without noise, the optimisation phase of Welling & Teh's chain made explicit. Its end point
   is the MAP estimate:
   ``finalize`` returns it, so the summary's ``test_loss``, ``test_acc`` and ``ece`` are MAP's.
2. Sampling: from then on every step adds the Langevin noise, and every ``thin``-th iterate is
   kept (the most recent ``samples`` of them, parameters and buffers). The kept samples and the
   MAP state are part of every checkpoint, so a resumed run has them: they cost ``samples + 1``
   times the model's size, in memory and on disk.

The posterior predictive meanₛ softmax(f(x; φₛ)) over the kept samples is scored on val and test
as ``sgld_val_loss``, ``sgld_val_acc``, ``sgld_test_loss``, ``sgld_test_acc``, ``sgld_ece`` and
``sgld_confidence`` each epoch once a sample exists, and in the summary; ``sgld_samples`` is
how many were kept. Plain SGD only (the spec refuses momentum and Adam: with momentum the
dynamics are SGHMC's, which need other noise). Classification only.
Effect: on small-data MNIST-1D the predictive's ECE is below MAP's.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from regcore.bayes.predictive import mean_probs, predictive_metrics
from regcore.bayes.prior import PriorRegularizer
from regcore.regularizer_specs import SGLDSpec
from regcore.regularizers.base import Step, TaskInfo

Sample = dict[str, torch.Tensor]


def langevin_std(lr: float, n: int, temperature: float) -> float:
    """Standard deviation of η: √(ε·T) with ε = 2·lr/N."""
    return math.sqrt(2.0 * lr * temperature / n)


class SGLD(PriorRegularizer):
    spec_class = SGLDSpec
    spec: SGLDSpec

    def __init__(self, spec: SGLDSpec, task: TaskInfo):
        super().__init__(spec, task)
        per = task.steps_per_epoch if spec.burn_in_unit == "epochs" else 1
        #: optimizer steps without noise; the iterate after them is the MAP estimate
        self.burn_in_steps = (
            spec.burn_in * per if spec.burn_in is not None else task.epochs * per // 2
        )
        self.kept: deque[Sample] = deque(maxlen=spec.samples)
        self.map_state: Sample | None = None

    def setup(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        super().setup(model, optimizer)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = optimizer
        self.model = model

    def _state(self) -> Sample:
        m = self.model
        return {k: v.detach().clone() for k, v in [*m.named_parameters(), *m.named_buffers()]}

    @torch.no_grad()
    def after_optimizer_step(self, step: Step) -> None:
        taken = step.index + 1  # optimizer steps so far, this one included
        if taken == self.burn_in_steps:
            self.map_state = self._state()
        if taken <= self.burn_in_steps:
            return
        std = langevin_std(
            float(self.optimizer.param_groups[0]["lr"]), self.n, self.spec.temperature
        )
        for p in self.params:
            p.add_(torch.randn_like(p), alpha=std)
        if (taken - self.burn_in_steps) % self.spec.thin == 0:
            self.kept.append(self._state())

    def _predict(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        was = model.training
        model.eval()
        try:
            return mean_probs(functional_call(model, s, (x,)) for s in self.kept)
        finally:
            model.train(was)

    def _metrics(self, model: nn.Module) -> dict[str, float]:
        if not self.kept:
            return {}
        out = predictive_metrics(lambda x: self._predict(model, x), self.data, self.name)
        return {**out, f"{self.name}_samples": float(len(self.kept))}

    def extra_metrics(self, model: nn.Module) -> dict[str, float]:
        return self._metrics(model)

    def finalize(self, model: nn.Module) -> nn.Module:
        if self.map_state is not None:
            model.load_state_dict(self.map_state, strict=False)
        return model

    def final_metrics(self, model: nn.Module) -> dict[str, float]:
        return self._metrics(model)

    def state_dict(self) -> dict[str, Any]:
        return {"kept": list(self.kept), "map": self.map_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        dev = self.task.device
        kept = [{k: v.to(dev) for k, v in s.items()} for s in state.get("kept", [])]
        self.kept = deque(kept, maxlen=self.spec.samples)
        found = state.get("map")
        self.map_state = None if found is None else {k: v.to(dev) for k, v in found.items()}
