"""Accuracy under attack on the test split: what ``adversarial`` training buys, as a number.

``fgsm_acc``: accuracy on x′ = x + ε·sign(∇ₓJ) (Goodfellow, Shlens & Szegedy 2015);
``pgd_acc``: on x′ after ``steps`` projected signed steps of ``step_size`` (default 2.5·ε/steps)
inside the L∞ ball of radius ε (Madry et al. 2018). The attacks are the ones ``adversarial``
trains with (``regcore.regularizers.adversarial``), run here with the model in eval mode (the
measurements' context) against the mean data loss; they start from x (no random start), so they
draw nothing from any RNG. ε is in standardized input units. A bare name in the spec's
``measure`` list takes the defaults of ``regcore.spec.AttackMeasureSpec`` (ε 0.1, ``adversarial``'s
default radius, and 10 PGD steps); an object sets ε, steps and step size, under its own ``key``.
Classification only (None for regression). Any model that maps inputs to logits can be attacked,
a combined ensemble too (``attack_metrics``, which ``regcore.ensemble.runner`` calls). The test
split goes through in chunks of ``CHUNK``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from regcore.data import Dataset, Split
from regcore.regularizers.adversarial import fgsm, pgd
from regcore.spec import AttackMeasureSpec, measure_key, measure_name
from regcore.training.metrics import data_loss

EPSILON = float(AttackMeasureSpec.model_fields["eps"].default)
PGD_STEPS = int(AttackMeasureSpec.model_fields["steps"].default)
CHUNK = 2048
ATTACKS = ("fgsm_acc", "pgd_acc")


def attack_accuracy(
    model: nn.Module,
    split: Split,
    task: str,
    method: str,
    eps: float = EPSILON,
    steps: int = PGD_STEPS,
    step_size: float | None = None,
) -> float | None:
    """Fraction of ``split`` classified correctly after the ``method`` ("fgsm"/"pgd") attack."""
    if task != "classification" or len(split) == 0:
        return None

    def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return data_loss(out, y, task)

    correct = 0
    for i in range(0, len(split), CHUNK):
        x, y = split.x[i : i + CHUNK], split.y[i : i + CHUNK]
        with torch.enable_grad():
            if method == "fgsm":
                adv = fgsm(model, x, y, eps, loss_fn)
            else:
                adv = pgd(model, x, y, eps, loss_fn, steps, step_size)
        with torch.no_grad():
            correct += int((model(adv).argmax(dim=1) == y).sum())
    return correct / len(split)


def attack_entry(entry: str | AttackMeasureSpec) -> AttackMeasureSpec:
    """A ``measure`` entry as its parameters (a bare name takes the defaults)."""
    return AttackMeasureSpec(name=entry) if isinstance(entry, str) else entry  # type: ignore[arg-type]


def entry_accuracy(model: nn.Module, data: Dataset, entry: str | AttackMeasureSpec) -> float | None:
    """One ``fgsm_acc`` / ``pgd_acc`` entry on the test split."""
    a = attack_entry(entry)
    method = a.name.removesuffix("_acc")
    return attack_accuracy(model, data.test, data.task, method, a.eps, a.steps, a.step_size)


def attack_metrics(
    model: nn.Module, data: Dataset, entries: Sequence[str | AttackMeasureSpec]
) -> dict[str, float]:
    """The attack entries of a ``measure`` list on ``model`` in eval mode, by metric key (the
    combined ensemble's, where measurements otherwise run per member)."""
    attacks = {measure_key(e): e for e in entries if measure_name(e) in ATTACKS}
    if not attacks:
        return {}
    was = model.training
    model.eval()
    try:
        out = {key: entry_accuracy(model, data, e) for key, e in attacks.items()}
    finally:
        model.train(was)
    return {k: v for k, v in out.items() if v is not None}
