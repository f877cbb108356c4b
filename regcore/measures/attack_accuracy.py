"""Accuracy under attack on the test split: what ``adversarial`` training buys, as a number.

``fgsm_acc``: accuracy on x′ = x + ε·sign(∇ₓJ) (Goodfellow, Shlens & Szegedy 2015);
``pgd_acc``: on x′ after ``PGD_STEPS`` projected signed steps inside the L∞ ball of radius ε
(Madry et al. 2018). The attacks are the ones ``adversarial`` trains with
(``regcore.regularizers.adversarial``), run here with the model in eval mode (the measurements'
context) against the mean data loss; they start from x (no random start), so they draw nothing
from any RNG. ε is ``EPSILON`` in standardized input units, ``adversarial``'s default radius.
Classification only (None for regression). The test split goes through in chunks of ``CHUNK``.
"""

from __future__ import annotations

import torch
from torch import nn

from regcore.data import Split
from regcore.regularizer_specs import AdversarialSpec
from regcore.regularizers.adversarial import fgsm, pgd
from regcore.training.metrics import data_loss

EPSILON = float(AdversarialSpec.model_fields["epsilon"].default)
PGD_STEPS = 10
CHUNK = 2048


def attack_accuracy(
    model: nn.Module,
    split: Split,
    task: str,
    method: str,
    eps: float = EPSILON,
    steps: int = PGD_STEPS,
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
                adv = pgd(model, x, y, eps, loss_fn, steps)
        with torch.no_grad():
            correct += int((model(adv).argmax(dim=1) == y).sum())
    return correct / len(split)
