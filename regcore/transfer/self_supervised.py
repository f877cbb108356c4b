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
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from regcore.data import Dataset
from regcore.models import build_model
from regcore.regularizers.augment import augment_view
from regcore.spec import ExperimentSpec, SelfSupervisedSpec
from regcore.training.context import RunContext
from regcore.training.device import choose_threads
from regcore.training.driver import drive
from regcore.training.optim import build_optimizer
from regcore.training.result import Divergence, RunResult
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


class SelfSupervisedStage:
    """The pretraining on the self-supervised task of ``self_supervised.mode``: a model of the
    spec's architecture (its head: input-sized for masked, ``projection`` units for
    contrastive), an engine of ``regcore.training.driver``. The stage keeps no checkpoints
    (a resumed pipeline pretrains again: a stage is short beside the run it feeds)."""

    monitor: str | None = None  # no best point: the last epoch's body is what transfers

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        spec, data = ctx.spec, ctx.data
        assert spec.self_supervised is not None
        ssl: SelfSupervisedSpec = spec.self_supervised
        self.ssl = ssl
        seed_all(spec.seed + 1)
        self.contrastive = ssl.mode == "contrastive"
        outputs = ssl.projection if self.contrastive else data.in_features
        model = build_model(spec.model, data.in_features, outputs, data.extras.get("input_shape"))
        self.model = model.to(ctx.device)
        train = spec.train if ssl.lr is None else spec.train.model_copy(update={"lr": ssl.lr})
        self.optimizer = build_optimizer(self.model, train)
        self.shuffle = torch.Generator().manual_seed(spec.seed + 1)
        self.x = pretraining_inputs(data)
        self.batch_size = ssl.batch_size or spec.train.batch_size
        self.key = "contrastive_loss" if self.contrastive else "recon_loss"
        self.threads = ctx.threads or spec.train.threads or choose_threads(self.model, ctx.device)
        self.best: tuple[float, int] | None = None
        self.epoch = 0
        self.metrics: dict[str, float] = {}
        self.timings = {"train_s": 0.0, "eval_s": 0.0}

    def loss_of(self, batch: torch.Tensor) -> torch.Tensor:
        if self.contrastive:
            return contrastive_loss(self.model, batch, self.ssl, self.ctx.data.image_shape)[0]
        return masked_reconstruction_loss(self.model, batch, self.ssl.mask)

    def start_info(self) -> dict[str, Any]:
        return {"epochs": self.ssl.epochs}

    def point(self) -> int:
        return self.epoch

    def rounds(self) -> int:
        return self.epoch

    def budget_left(self) -> bool:
        return self.epoch < self.ssl.epochs

    def advance(self) -> dict[str, float] | None:
        t0 = time.perf_counter()
        self.model.train()
        total = torch.zeros((), device=self.ctx.device)
        n, bs = len(self.x), self.batch_size
        order = torch.randperm(n, generator=self.shuffle).to(self.ctx.device)
        for start in range(0, n, bs):
            if self.ctx.reporter.should_cancel():
                return None
            batch = self.x[order[start : start + bs]]
            if self.contrastive and len(batch) < 2:  # a lone view has no negatives
                continue
            loss = self.loss_of(batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.detach()
        self.epoch += 1
        mean = float(total) / math.ceil(n / bs)
        if not math.isfinite(mean):
            raise Divergence(f"{self.key} became {mean} in pretraining epoch {self.epoch}")
        self.timings["train_s"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        self.metrics = {
            self.key: mean,
            **_validation(self.model, self.ctx.data, self.ssl, self.ctx.spec),
        }
        self.timings["eval_s"] += time.perf_counter() - t0
        return self.metrics

    def cancel_reason(self) -> str:
        return f"cancelled during pretraining epoch {self.epoch + 1}"

    def after_epoch(self, point: int, metrics: dict[str, float]) -> None:
        pass

    def should_stop(self) -> bool:
        return False

    def weights(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def train_state(self) -> dict[str, Any]:
        return {"epoch": self.epoch}

    def load(self, weights: dict[str, torch.Tensor], state: dict[str, Any]) -> bool:
        return False  # not checkpointed (see the class docstring)

    def finish(self, status: str) -> tuple[dict[str, float], int | None]:
        return dict(self.metrics), None


def pretrain_self_supervised(ctx: RunContext) -> tuple[nn.Module, RunResult]:
    """Pretrain on ``ctx`` (a stage of the run: its reporter prefixes ``pretrain_``); returns
    the model and the stage's result (its metrics: the last epoch's)."""
    stage = SelfSupervisedStage(ctx)
    return stage.model, drive(stage)


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
