"""Self-supervised pretraining on the inputs alone, then supervised fine-tuning of its body.

Two modes (``self_supervised.mode``), both on the training inputs and, when the spec asks for
them (``data.n_unlabeled``), the unlabelled ones:

* ``masked`` — masked-input reconstruction (Prince §9.3.7; the denoising autoencoder of Vincent
  et al. 2008): hide a random fraction of each input's features and train the network, with an
  input-sized head, to fill them in;
* ``contrastive`` — SimCLR (Chen et al. 2020, "A simple framework for contrastive learning of
  visual representations"): two random augmented views of each input (the augment transforms:
  shift, scale and noise for 1D signals), and the NT-Xent loss that makes each view's projection
  pick its partner out of the other 2B − 2 in the batch. The network's own output layer, of
  ``projection`` units, is the (linear) projection head the loss reads; like SimCLR's, it is
  dropped for fine-tuning, and the body before it is what transfers.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from regcore.data import Dataset
from regcore.models import build_model
from regcore.regularizers.augment import augment_view
from regcore.spec import ExperimentSpec, SelfSupervisedSpec
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


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's normalized-temperature cross-entropy: rows i of ``z1`` and ``z2`` are the two
    views of one input; each of the 2B projections, cosine similarities over τ, must pick its
    partner out of the 2B − 1 others (mean over the 2B)."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = (z @ z.T) / temperature
    n = len(z1)
    self_pairs = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_pairs, float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, partner)


def partner_accuracy(z1: torch.Tensor, z2: torch.Tensor) -> float:
    """The fraction of the 2B projections whose most similar other is their partner view."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = (z @ z.T).fill_diagonal_(float("-inf"))
    n = len(z1)
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return float((sim.argmax(1) == partner).float().mean())


def contrastive_loss(
    model: nn.Module,
    x: torch.Tensor,
    ssl: SelfSupervisedSpec,
    image_shape: tuple[int, int] | None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """NT-Xent of two augmented views of ``x``, and the two projections."""
    z1 = model(augment_view(x, ssl.views, image_shape, generator))
    z2 = model(augment_view(x, ssl.views, image_shape, generator))
    return nt_xent(z1, z2, ssl.temperature), z1, z2


def pretraining_inputs(data: Dataset) -> torch.Tensor:
    """The training inputs and the unlabelled ones (``data.n_unlabeled``), labels unused."""
    if data.unlabeled is None:
        return data.train.x
    return torch.cat([data.train.x, data.unlabeled])


def pretrain_self_supervised(
    spec: ExperimentSpec, data: Dataset, reporter: Any, device: torch.device, workdir: Path
) -> tuple[nn.Module, dict[str, float]]:
    """Train a model of the spec's architecture on the self-supervised task of
    ``self_supervised.mode`` (its head: input-sized for masked, ``projection`` units for
    contrastive); returns it and its last epoch's metrics."""
    ssl = spec.self_supervised
    assert ssl is not None
    seed_all(spec.seed + 1)
    contrastive = ssl.mode == "contrastive"
    outputs = ssl.projection if contrastive else data.in_features
    model = build_model(spec.model, data.in_features, outputs, data.extras.get("input_shape"))
    model = model.to(device)
    train = spec.train if ssl.lr is None else spec.train.model_copy(update={"lr": ssl.lr})
    opt = build_optimizer(model, train)
    shuffle = torch.Generator().manual_seed(spec.seed + 1)
    x = pretraining_inputs(data)
    n, bs = len(x), ssl.batch_size or spec.train.batch_size
    image = data.image_shape

    def loss_of(batch: torch.Tensor) -> torch.Tensor:
        if contrastive:
            return contrastive_loss(model, batch, ssl, image)[0]
        return masked_reconstruction_loss(model, batch, ssl.mask)

    reporter.on_start(
        {
            "epochs": ssl.epochs,
            "start_epoch": 0,
            "device": str(device),
            "resumed": False,
            "stage": "pretrain",
        }
    )
    key = "contrastive_loss" if contrastive else "recon_loss"
    metrics: dict[str, float] = {}
    workdir.mkdir(parents=True, exist_ok=True)
    log = MetricsLog(workdir / "metrics.jsonl", keep_until=0)
    for epoch in range(1, ssl.epochs + 1):
        model.train()
        total = torch.zeros((), device=device)
        order = torch.randperm(n, generator=shuffle).to(device)
        for start in range(0, n, bs):
            batch = x[order[start : start + bs]]
            if contrastive and len(batch) < 2:  # a lone view has no negatives
                continue
            loss = loss_of(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
        metrics = {key: float(total) / math.ceil(n / bs), **_validation(model, data, ssl, spec)}
        log.write(epoch, metrics)
        reporter.on_epoch(epoch, metrics)
        if reporter.should_cancel():
            break
    log.close()
    return model, metrics


def _validation(
    model: nn.Module, data: Dataset, ssl: SelfSupervisedSpec, spec: ExperimentSpec
) -> dict[str, float]:
    """The pretraining loss on the validation inputs under fixed masks or views (so epochs
    compare); contrastive adds the partner-retrieval accuracy of those views."""
    model.eval()
    g = torch.Generator(device=data.val.x.device).manual_seed(spec.seed)
    with torch.no_grad():
        if ssl.mode == "masked":
            return {
                "val_recon_loss": float(masked_reconstruction_loss(model, data.val.x, ssl.mask, g))
            }
        loss, z1, z2 = contrastive_loss(model, data.val.x, ssl, data.image_shape, g)
        return {"val_contrastive_loss": float(loss), "val_partner_acc": partner_accuracy(z1, z2)}
