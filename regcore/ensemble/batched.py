"""Same-architecture members trained together as one batched model.

The members' parameters are stacked (``torch.func.stack_module_state``) and one forward runs
every member on its own batch under ``torch.func.vmap``: a batched matmul instead of k small
ones. The loss is the sum of the members' losses, so each member's gradient is its own; SGD
(with momentum) and Adam act elementwise, so each member follows the trajectory it would follow
alone, with its own initialization and batch order, up to floating-point rounding.

Supported when nothing in the spec needs per-member Python state or randomness the batched
forward cannot reproduce: models without batch norm, no inserted modules, no extra measures,
and regularizers among ``BATCHABLE``. Everything else trains one member after another.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from regcore.data import build_dataset
from regcore.ensemble.combine import Ensemble, combine_outputs
from regcore.ensemble.members import bootstrap_indices
from regcore.ensemble.runner import MEMBER_EPOCH_KEYS, ensemble_metrics, member_columns
from regcore.models import build_model
from regcore.models.params import classify_parameters
from regcore.regularizer_specs import L2Spec
from regcore.spec import ExperimentSpec
from regcore.training.checkpoint import save_checkpoint
from regcore.training.device import choose_threads, resolve_device
from regcore.training.loop import Divergence, MetricsLog, RunResult
from regcore.training.metrics import evaluate
from regcore.training.optim import build_optimizer, build_scheduler, current_lr
from regcore.training.reporter import NullReporter, Reporter
from regcore.training.rng import seed_all

#: regularizers the batched path reproduces exactly
BATCHABLE = {"l2"}
BATCHABLE_MODELS = {"linear", "mlp", "cnn1d", "resmlp"}


def why_not_batched(spec: ExperimentSpec) -> str | None:
    """None when the ensemble can train as one batched model, else the reason it cannot."""
    ens = spec.ensemble
    if ens.size < 2:
        return "a single member"
    if ens.snapshot is not None:
        return "snapshot members come from one run"
    if any(set(v) - {"seed"} for v in ens.vary):
        return "vary changes more than the seed"
    if spec.model.name not in BATCHABLE_MODELS:
        return f"model {spec.model.name} is not batched"
    if getattr(spec.model, "batch_norm", False):
        return "batch norm keeps per-member running statistics"
    for reg in spec.regularizers:
        if reg.name not in BATCHABLE or getattr(reg, "per_layer", None):
            return f"regularizer {reg.name} is not batched"
    if spec.measure:
        return "measures run per model"
    if spec.mc_dropout or spec.multitask or spec.pretrain or spec.self_supervised:
        return "inference and transfer sections run per model"
    return None


class StackedMembers(nn.Module):
    """k same-architecture models as stacked parameters; ``forward`` is the combined ensemble."""

    def __init__(self, models: list[nn.Module], combine: str, task: str):
        super().__init__()
        params, buffers = stack_module_state(models)
        self.names = list(params)
        # "__" keeps "bias" at the end of the key, so weight statistics still skip biases
        self.params = nn.ParameterDict(
            {n.replace(".", "__"): nn.Parameter(p.detach().clone()) for n, p in params.items()}
        )
        self.buffer_values = buffers
        self.k = len(models)
        self.combine = combine
        self.task = task
        self.base = [copy.deepcopy(models[0]).to("meta")]  # a list: not a registered submodule

    def stacked(self) -> dict[str, torch.Tensor]:
        return {n: self.params[n.replace(".", "__")] for n in self.names}

    def member_outputs(self, x: torch.Tensor, per_member_x: bool = False) -> torch.Tensor:
        base = self.base[0]

        def one(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], xi: torch.Tensor) -> Any:
            return functional_call(base, (p, b), (xi,))

        in_x = 0 if per_member_x else None
        return vmap(one, in_dims=(0, 0, in_x))(self.stacked(), self.buffer_values, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return combine_outputs(self.member_outputs(x), self.combine, self.task)

    def unstack(self, models: list[nn.Module]) -> list[nn.Module]:
        """Copy member i's weights into ``models[i]``."""
        with torch.no_grad():
            for i, m in enumerate(models):
                m.load_state_dict({n: p[i] for n, p in self.stacked().items()}, strict=False)
        return models

    def load_members(self, states: list[dict[str, torch.Tensor]]) -> None:
        with torch.no_grad():
            for n in self.names:
                self.params[n.replace(".", "__")].copy_(torch.stack([s[n] for s in states]))


def member_split_losses(
    outputs: torch.Tensor, y: torch.Tensor, task: str
) -> dict[str, torch.Tensor]:
    """Per-member mean loss (and accuracy) of outputs ``[k, N, C]``: tensors of shape [k]."""
    k, n = outputs.shape[:2]
    if task == "classification":
        ce = F.cross_entropy(outputs.flatten(0, 1), y.repeat(k), reduction="none").view(k, n)
        return {"loss": ce.mean(1), "acc": (outputs.argmax(-1) == y).float().mean(1)}
    return {"loss": (outputs - y).pow(2).flatten(1).mean(1)}


class BatchedEnsembleRun:
    """An ensemble trained as one vmapped model (see the module docstring)."""

    def __init__(
        self,
        spec: ExperimentSpec,
        workdir: Path,
        *,
        device: str | torch.device | None = None,
        reporter: Reporter | None = None,
        cache_dir: Path | None = None,
        threads: int | None = None,
        checkpoint_every: int = 1,
    ):
        self.spec = spec
        self.workdir = Path(workdir)
        self.reporter = reporter or NullReporter()
        self.checkpoint_every = checkpoint_every
        self.spec_hash = spec.spec_hash()
        self.device = resolve_device(device or spec.train.device)
        self.data = build_dataset(spec.data, spec.seed, cache_dir).to(self.device)
        d = self.data
        self.member_specs = spec.member_specs()
        self.models: list[nn.Module] = []
        for ms in self.member_specs:  # initialized exactly as a lone Trainer would
            seed_all(ms.seed)
            self.models.append(build_model(ms.model, d.in_features, d.out_features).to(self.device))
        self.stack = StackedMembers(self.models, spec.ensemble.combine, d.task)
        self.shuffles = [torch.Generator().manual_seed(ms.seed) for ms in self.member_specs]
        n = len(d.train)
        if spec.ensemble.bagging:
            idx = torch.stack(
                [bootstrap_indices(n, ms.seed, self.device) for ms in self.member_specs]
            )
        else:
            idx = torch.arange(n, device=self.device).expand(self.stack.k, n)
        self.train_x, self.train_y = d.train.x[idx], d.train.y[idx]  # [k, N, ...]
        self.optimizer = build_optimizer(self.stack, spec.train)
        self.scheduler = build_scheduler(self.optimizer, spec.train)
        kinds = classify_parameters(self.models[0])
        # why_not_batched admits l2 alone, so every regularizer here is an L2Spec
        l2_specs = [reg for reg in spec.regularizers if isinstance(reg, L2Spec)]
        self.l2 = [
            (n, reg.strength)
            for reg in l2_specs
            for n in self.stack.names
            if kinds.get(n, "weight") not in set(reg.exclude)
        ]
        self.threads = threads or spec.train.threads or choose_threads(self.models[0], self.device)
        self.epoch = 0
        self.best: tuple[float, int] | None = None
        self.timings = {"train_s": 0.0, "eval_s": 0.0, "checkpoint_s": 0.0}

    def train_epoch(self) -> bool:
        self.stack.train()
        k, n = self.train_x.shape[:2]
        bs = self.spec.train.batch_size
        orders = torch.stack([torch.randperm(n, generator=g) for g in self.shuffles]).to(
            self.device
        )
        rows = torch.arange(k, device=self.device)[:, None]
        total = torch.zeros((), device=self.device)
        batches = 0
        for start in range(0, n, bs):
            if self.reporter.should_cancel():
                return True
            idx = orders[:, start : start + bs]
            xb, yb = self.train_x[rows, idx], self.train_y[rows, idx]
            out = self.stack.member_outputs(xb, per_member_x=True)
            loss = member_split_losses_train(out, yb, self.data.task).sum()
            if self.l2:
                stacked = self.stack.stacked()
                loss = loss + sum(lam * stacked[name].pow(2).sum() for name, lam in self.l2)
            total = total + loss.detach()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            batches += 1
        mean = float(total) / batches / k
        if not math.isfinite(mean):
            raise Divergence(f"train_batch_loss became {mean} in epoch {self.epoch + 1}")
        self.batch_loss = mean
        return False

    @torch.no_grad()
    def epoch_metrics(self) -> dict[str, float]:
        self.stack.eval()
        metrics = evaluate(self.stack, self.data)
        per_member: list[dict[str, float]] = [{} for _ in range(self.stack.k)]
        for split in ("train", "val", "test"):
            s = getattr(self.data, split)
            x = self.train_x if split == "train" else s.x
            y = self.train_y if split == "train" else s.y
            outs = self.stack.member_outputs(x, per_member_x=split == "train")
            if split == "train":
                k, n = outs.shape[:2]
                vals = {key: v for key, v in _train_losses(outs, y, self.data.task).items()}
            else:
                vals = member_split_losses(outs, y, self.data.task)
            for key, v in vals.items():
                for i, value in enumerate(v.tolist()):
                    per_member[i][f"{split}_{key}"] = value
        metrics.update(member_columns(per_member, MEMBER_EPOCH_KEYS))
        metrics["train_batch_loss"] = self.batch_loss
        if self.scheduler is not None:
            self.scheduler.step()
        metrics["lr"] = current_lr(self.optimizer)
        return metrics

    def save(self, kind: str, metrics: dict[str, float]) -> None:
        t0 = time.perf_counter()
        ens = Ensemble(self.stack.unstack(self.models), self.spec.ensemble.combine, self.data.task)
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "shuffles": [g.get_state() for g in self.shuffles],
            "best": list(self.best) if self.best else None,
            "batched": True,
        }
        info = save_checkpoint(
            self.workdir / "checkpoints",
            kind,
            self.epoch,
            ens.member_state_dict(),
            state,
            metrics,
            self.spec_hash,
        )
        self.timings["checkpoint_s"] += time.perf_counter() - t0
        self.reporter.on_checkpoint(info)

    def resume(self) -> bool:
        from regcore.training.checkpoint import load_checkpoint

        ckpt = load_checkpoint(self.workdir / "checkpoints", "last", self.spec_hash)
        if ckpt is None or not ckpt.train_state.get("batched"):
            return False
        st = ckpt.train_state
        states = [
            {
                k[len(f"member{i}.") :]: v.to(self.device)
                for k, v in ckpt.model_state.items()
                if k.startswith(f"member{i}.")
            }
            for i in range(self.stack.k)
        ]
        self.stack.load_members(states)
        self.optimizer.load_state_dict(st["optimizer"])
        if self.scheduler is not None and st["scheduler"] is not None:
            self.scheduler.load_state_dict(st["scheduler"])
        for g, s in zip(self.shuffles, st["shuffles"], strict=True):
            g.set_state(s)
        self.best = (float(st["best"][0]), int(st["best"][1])) if st["best"] else None
        self.epoch = ckpt.epoch
        return True

    def run(self, resume: bool = False) -> RunResult:
        torch.set_num_threads(self.threads)
        self.workdir.mkdir(parents=True, exist_ok=True)
        resumed = resume and self.resume()
        log = MetricsLog(self.workdir / "metrics.jsonl", keep_until=self.epoch if resumed else 0)
        epochs = self.spec.train.epochs
        self.reporter.on_start(
            {
                "epochs": epochs,
                "start_epoch": self.epoch,
                "device": str(self.device),
                "threads": self.threads,
                "resumed": resumed,
                "members": self.stack.k,
                "batched": True,
            }
        )
        status, reason, metrics = "succeeded", None, {}
        try:
            while self.epoch < epochs:
                t0 = time.perf_counter()
                cancelled = self.train_epoch()
                self.timings["train_s"] += time.perf_counter() - t0
                if cancelled:
                    status, reason = "cancelled", f"cancelled during epoch {self.epoch + 1}"
                    break
                self.epoch += 1
                t0 = time.perf_counter()
                metrics = self.epoch_metrics()
                self.timings["eval_s"] += time.perf_counter() - t0
                log.write(self.epoch, metrics)
                self.reporter.on_epoch(self.epoch, metrics)
                if self.best is None or metrics["val_loss"] < self.best[0]:
                    self.best = (metrics["val_loss"], self.epoch)
                    if self.checkpoint_every:
                        self.save("best", metrics)
                last = self.epoch >= epochs
                if self.checkpoint_every and (last or self.epoch % self.checkpoint_every == 0):
                    self.save("last", metrics)
        except Divergence as err:
            log.close()
            return RunResult("failed", self.epoch, None, metrics, str(err), self._timings())
        log.close()
        models = self.stack.unstack(self.models)
        self.model = Ensemble(models, self.spec.ensemble.combine, self.data.task)
        per_member = []
        for m in models:
            mm = evaluate(m, self.data)
            mm.update(epochs_run=float(self.epoch), best_epoch=0.0)
            per_member.append(mm)
        final = ensemble_metrics(self.model, self.data) if self.epoch else {}
        final.update(member_columns(per_member))
        final["batched"] = 1.0
        best_epoch = self.best[1] if self.best else None
        return RunResult(status, self.epoch, best_epoch, final, reason, self._timings())

    def _timings(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.timings.items()}


def member_split_losses_train(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """Per-member mean data loss ``[k]`` of outputs ``[k, B, C]`` against targets ``[k, B]``."""
    k, b = out.shape[:2]
    if task == "classification":
        return F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none").view(k, b).mean(1)
    return (out - y).pow(2).flatten(1).mean(1)


def _train_losses(out: torch.Tensor, y: torch.Tensor, task: str) -> dict[str, torch.Tensor]:
    losses = {"loss": member_split_losses_train(out, y, task)}
    if task == "classification":
        losses["acc"] = (out.argmax(-1) == y).float().mean(1)
    return losses
