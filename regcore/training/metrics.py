"""The per-epoch metrics of CONTRACT §2, computed in eval mode under no_grad."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from regcore.data import Dataset, Split
from regcore.models.params import effective_weights

ECE_BINS = 15
SPARSITY_THRESHOLD = 1e-3


def data_loss(outputs: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """Mean data loss: cross-entropy (class indices or target distributions) or squared error."""
    if task == "classification":
        return F.cross_entropy(outputs, y)
    return F.mse_loss(outputs, y)


def expected_calibration_error(
    probs: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS
) -> float:
    """ECE with equal-width confidence bins: Σ_b (n_b/n)·|acc_b − conf_b| = Σ_b |Σacc − Σconf|/n.

    Per-bin sums by ``bincount`` rather than a loop over bins: one host sync, not one per bin.
    """
    conf, pred = probs.detach().max(dim=1)
    correct = (pred == labels).to(conf.dtype)
    edges = torch.linspace(0.0, 1.0, bins + 1, device=probs.device)
    idx = torch.bucketize(conf, edges[1:-1], right=False)
    acc_sum = torch.bincount(idx, weights=correct, minlength=bins)
    conf_sum = torch.bincount(idx, weights=conf, minlength=bins)
    return float((acc_sum - conf_sum).abs().sum() / conf.numel())


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    return torch.cat([model(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)])


@torch.no_grad()
def split_metrics(
    model: nn.Module, split: Split, task: str
) -> tuple[dict[str, float], torch.Tensor]:
    out = predict(model, split.x)
    m = {"loss": float(data_loss(out, split.y, task))}
    if task == "classification":
        m["acc"] = float((out.argmax(1) == split.y).float().mean())
    return m, out


@torch.no_grad()
def weight_metrics(model: nn.Module) -> dict[str, float]:
    """weight_l2, weight_l1 and sparsity of the weights the eval-mode forward pass uses: under
    ``l0``'s gates the gated weight W∘z, so a closed gate counts as a zero weight."""
    was_training = model.training
    model.eval()
    try:
        ws = effective_weights(model)
    finally:
        model.train(was_training)
    if not ws:
        return {"weight_l2": 0.0, "weight_l1": 0.0, "sparsity": 0.0}
    flat = torch.cat([w.detach().reshape(-1) for w in ws])
    return {
        "weight_l2": float(flat.norm(2)),
        "weight_l1": float(flat.abs().sum()),
        "sparsity": float((flat.abs() < SPARSITY_THRESHOLD).float().mean()),
    }


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset) -> dict[str, float]:
    """train/val/test loss (and accuracy), gen_gap, ece, confidence and weight statistics.

    The model is put in eval mode so that dropout and noise don't pollute the numbers, and put
    back in the mode it was in.
    """
    was_training = model.training
    model.eval()
    try:
        metrics: dict[str, float] = {}
        test_out = None
        for name in ("train", "val", "test"):
            m, out = split_metrics(model, getattr(data, name), data.task)
            metrics.update({f"{name}_{k}": v for k, v in m.items()})
            if name == "test":
                test_out = out
        metrics["gen_gap"] = metrics["val_loss"] - metrics["train_loss"]
        if data.task == "classification" and test_out is not None:
            probs = test_out.softmax(1)
            metrics["ece"] = expected_calibration_error(probs, data.test.y)
            metrics["confidence"] = float(probs.max(1).values.mean())
        metrics.update(weight_metrics(model))
        return metrics
    finally:
        model.train(was_training)
