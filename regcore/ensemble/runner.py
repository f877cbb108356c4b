"""Train an ensemble on top of the single-run Trainer, one member after another each epoch.

Deep ensembles (Lakshminarayanan et al. 2017): k members with different seeds; bagging
(Breiman 1996): each on a bootstrap resample; hyper-ensembles (Wenzel et al. 2020): ``vary``
gives each member its own hyperparameters; snapshot ensembles (Huang et al. 2017): one run
under a cyclic cosine lr, a member kept at the end of each cycle.

Members advance in lock-step, one epoch each, so the ensemble reports per-epoch metrics through
the same Reporter as a single run: the ensemble's under the usual keys, ``member{i}_<key>`` for
each member's losses and accuracies, and ``member_mean_<key>``. Checkpoints hold every member
(keys prefixed ``member{i}.``) and each member's training state, so a run resumes.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
from torch import nn

from regcore.ensemble.combine import Ensemble, error_decomposition
from regcore.ensemble.members import (
    CancelOnly,
    Member,
    bootstrap_indices,
    build_trainer,
    with_train,
)
from regcore.measures.attack_accuracy import attack_metrics
from regcore.training.context import RunContext
from regcore.training.driver import drive, improves
from regcore.training.metrics import evaluate, predict
from regcore.training.result import RunResult

#: the member metrics recorded every epoch (the summary has all of each member's keys)
MEMBER_EPOCH_KEYS = ("train_loss", "val_loss", "test_loss", "train_acc", "val_acc", "test_acc")


def member_columns(per_member: list[dict[str, float]], keys: Any = None) -> dict[str, float]:
    """``member{i}_<key>`` for each member and ``member_mean_<key>`` for keys all members have."""
    out: dict[str, float] = {}
    for i, m in enumerate(per_member):
        out.update({f"member{i}_{k}": v for k, v in m.items() if keys is None or k in keys})
    common = set.intersection(*(set(m) for m in per_member)) if per_member else set()
    for k in sorted(common):
        out[f"member_mean_{k}"] = sum(m[k] for m in per_member) / len(per_member)
    return out


@torch.no_grad()
def ensemble_metrics(ensemble: Ensemble, data: Any) -> dict[str, float]:
    """The single-run keys for the combined model, plus the v/c decomposition for regression."""
    metrics = evaluate(ensemble, data)
    if data.task == "regression":
        was = ensemble.training
        ensemble.eval()
        outs = torch.stack([predict(m, data.test.x) for m in ensemble.members])
        ensemble.train(was)
        metrics.update(error_decomposition(outs, data.test.y))
    return metrics


class EnsembleRun:
    """The members of one ensemble experiment, trained one after another each epoch: an engine
    of ``regcore.training.driver`` (``run()`` drives it)."""

    monitor: str | None = "val_loss"

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        spec = self.spec = ctx.spec
        self.ens = spec.ensemble
        self.data = ctx.data
        member_specs = (
            [spec.model_copy(update={"ensemble": type(self.ens)()})]
            if self.ens.snapshot
            else spec.member_specs()
        )
        self.members: list[Member] = []
        self.bootstrap: list[torch.Tensor] = []
        for i, ms in enumerate(member_specs):
            data = self.data
            if self.ens.bagging:
                idx = bootstrap_indices(len(data.train), ms.seed, ctx.device)
                self.bootstrap.append(idx)
                data = with_train(data, type(data.train)(data.train.x[idx], data.train.y[idx]), idx)
            t = build_trainer(
                ms,
                ctx.workdir / f"member{i}",
                data,
                CancelOnly(ctx.reporter),
                device=ctx.device,
                cache_dir=ctx.cache_dir,
                threads=ctx.threads,
            )
            self.members.append(Member(t))
            self.members[-1].leave()  # its RNG right after its own seeding and initialization
        self.snapshots: list[nn.Module] = []
        if self.ens.snapshot:
            t = self.members[0].trainer
            self.cycle = spec.train.epochs // self.ens.snapshot.cycles
            # the cyclic cosine lr replaces the spec's schedule (stepped once per epoch)
            t.scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
                t.optimizer, T_0=self.cycle
            )
        self.threads = self.members[0].trainer.threads
        self.epochs = max(m.trainer.spec.train.epochs for m in self.members)
        self.epoch = 0
        self.best: tuple[float, int] | None = None
        self.timings = {"train_s": 0.0, "eval_s": 0.0, "checkpoint_s": 0.0}

    # --- the ensemble as it stands --------------------------------------------------------
    def current(self) -> Ensemble:
        if self.ens.snapshot:
            t = self.members[0].trainer
            models = list(self.snapshots)
            if not models or t.epoch % self.cycle:
                models.append(t.model)
            return Ensemble(models, self.ens.combine, self.data.task)
        return Ensemble([m.trainer.model for m in self.members], self.ens.combine, self.data.task)

    # --- checkpoints ----------------------------------------------------------------------
    def weights(self) -> dict[str, torch.Tensor]:
        weights = self.current().member_state_dict()
        if self.ens.snapshot:  # the running model too, so that training can continue
            weights.update(
                {f"running.{k}": v for k, v in self.members[0].trainer.model.state_dict().items()}
            )
        return weights

    def train_state(self) -> dict[str, Any]:
        return {
            "members": [m.train_state() for m in self.members],
            "snapshots": len(self.snapshots),
            "best": list(self.best) if self.best else None,
            "epoch": self.epoch,
        }

    def load(self, weights: dict[str, torch.Tensor], st: dict[str, Any]) -> bool:
        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}

        if self.ens.snapshot:
            self.members[0].load(part("running."), st["members"][0])
            for i in range(int(st["snapshots"])):
                snap = copy.deepcopy(self.members[0].trainer.model)
                snap.load_state_dict(part(f"member{i}."))
                self.snapshots.append(snap)
        else:
            for i, (m, mst) in enumerate(zip(self.members, st["members"], strict=True)):
                m.load(part(f"member{i}."), mst)
        self.best = (float(st["best"][0]), int(st["best"][1])) if st["best"] else None
        # the ensemble's epochs are its longest-running member's (a checkpoint written before
        # "epoch" was saved has only the members')
        self.epoch = int(st.get("epoch", max(m.trainer.epoch for m in self.members)))
        return True

    # --- the engine the driver runs -------------------------------------------------------
    def start_info(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "members": self.ens.size}

    def point(self) -> int:
        return self.epoch

    def rounds(self) -> int:
        return self.epoch

    def budget_left(self) -> bool:
        return self.epoch < self.epochs

    def advance(self) -> dict[str, float] | None:
        """Train each unfinished member one epoch (each member's own epoch, as its lone run
        has it: ``Trainer.advance`` and ``after_epoch``); then the ensemble's metrics."""
        for m in self.members:
            t = m.trainer
            if m.done or not t.budget_left():
                m.done = True
                continue
            m.enter()
            t0 = time.perf_counter()
            metrics = t.advance()
            self.timings["train_s"] += time.perf_counter() - t0
            if metrics is None:
                m.leave()
                return None
            t0 = time.perf_counter()
            m.metrics = metrics
            t.after_epoch(t.epoch, metrics)
            if improves(t.best, metrics["val_loss"]):
                t.best = (metrics["val_loss"], t.epoch)
            m.done = t.should_stop()
            self.timings["eval_s"] += time.perf_counter() - t0
            m.leave()
        if self.ens.snapshot and self.members[0].trainer.epoch % self.cycle == 0:
            self.snapshots.append(copy.deepcopy(self.members[0].trainer.model))
        self.epoch += 1
        return self.epoch_metrics()

    def epoch_metrics(self) -> dict[str, float]:
        t0 = time.perf_counter()
        metrics = ensemble_metrics(self.current(), self.data)
        per_member = [m.metrics for m in self.members]
        if self.ens.snapshot:
            metrics.update({f"run_{k}": v for k, v in per_member[0].items()})
        else:
            metrics.update(member_columns(per_member, MEMBER_EPOCH_KEYS))
        metrics["lr"] = per_member[0].get("lr", 0.0)
        # accuracy under attack of the combined model (each member measures its own)
        metrics.update(attack_metrics(self.current(), self.data, self.spec.measure))
        self.timings["eval_s"] += time.perf_counter() - t0
        return metrics

    def cancel_reason(self) -> str:
        return f"cancelled during epoch {self.epoch + 1}"

    def after_epoch(self, point: int, metrics: dict[str, float]) -> None:
        pass

    def should_stop(self) -> bool:
        return all(m.done for m in self.members)

    def run(self, resume: bool = False) -> RunResult:
        return drive(self, resume)

    def finish(self, status: str) -> tuple[dict[str, float], int | None]:
        """Finalize every member (early stopping restores its best) and measure everything."""
        per_member: list[dict[str, float]] = []
        for m in self.members:
            t = m.trainer
            for reg in t.regs:
                t.model = reg.finalize(t.model)
            if not self.ens.snapshot:
                mm = evaluate(t.model, self.data) if t.epoch else {}
                best = next((e for r in t.regs if (e := r.best_epoch()) is not None), None)
                if best is None and t.best is not None:
                    best = t.best[1]
                mm.update(epochs_run=float(t.epoch), best_epoch=float(best or 0))
                per_member.append(mm)
        ens = self.model = self.current()
        if self.ens.snapshot:
            per_member = [evaluate(s, self.data) for s in ens.members]
        final = ensemble_metrics(ens, self.data) if self.epoch else {}
        final.update(member_columns(per_member))
        if self.epoch:
            final.update(attack_metrics(ens, self.data, self.spec.measure))
        return final, self.best[1] if self.best else None
