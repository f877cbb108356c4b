"""Self-supervised pretraining by masked-input reconstruction (Prince §9.3.7; the denoising
autoencoder of Vincent et al. 2008): hide a random fraction of each input's features and train
the network to fill them in. Its body then starts the supervised fine-tuning.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from regcore.data import Dataset
from regcore.models import build_model
from regcore.spec import ExperimentSpec
from regcore.training.loop import MetricsLog
from regcore.training.optim import build_optimizer
from regcore.training.rng import seed_all


def masked_reconstruction_loss(
    model: nn.Module, x: torch.Tensor, mask_p: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Mean squared error on the masked features of ``x`` after zeroing them (standardized
    inputs: zero is the feature mean)."""
    mask = torch.rand(x.shape, generator=generator, device=x.device) < mask_p
    out = model(x.masked_fill(mask, 0.0))
    err = (out - x).pow(2) * mask
    return err.sum() / mask.sum().clamp_min(1)


def pretrain_masked(
    spec: ExperimentSpec, data: Dataset, reporter: Any, device: torch.device, workdir: Path
) -> tuple[nn.Module, dict[str, float]]:
    """Train a model of the spec's architecture with an input-sized head to reconstruct masked
    inputs of the training split; returns it and its last metrics."""
    ssl = spec.self_supervised
    assert ssl is not None
    seed_all(spec.seed + 1)
    model = build_model(spec.model, data.in_features, data.in_features).to(device)
    train = spec.train if ssl.lr is None else spec.train.model_copy(update={"lr": ssl.lr})
    opt = build_optimizer(model, train)
    shuffle = torch.Generator().manual_seed(spec.seed + 1)
    x = data.train.x
    n, bs = len(x), spec.train.batch_size
    reporter.on_start(
        {
            "epochs": ssl.epochs,
            "start_epoch": 0,
            "device": str(device),
            "resumed": False,
            "stage": "pretrain",
        }
    )
    metrics: dict[str, float] = {}
    workdir.mkdir(parents=True, exist_ok=True)
    log = MetricsLog(workdir / "metrics.jsonl", keep_until=0)
    for epoch in range(1, ssl.epochs + 1):
        model.train()
        total = torch.zeros((), device=device)
        order = torch.randperm(n, generator=shuffle).to(device)
        for start in range(0, n, bs):
            loss = masked_reconstruction_loss(model, x[order[start : start + bs]], ssl.mask)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
        model.eval()
        with torch.no_grad():  # a fixed mask, so epochs compare
            g = torch.Generator(device=device).manual_seed(spec.seed)
            val = masked_reconstruction_loss(model, data.val.x, ssl.mask, g)
        metrics = {
            "recon_loss": float(total) / math.ceil(n / bs),
            "val_recon_loss": float(val),
        }
        log.write(epoch, metrics)
        reporter.on_epoch(epoch, metrics)
        if reporter.should_cancel():
            break
    log.close()
    return model, metrics
