"""The single run: one model trained on one spec, the engine ``regcore.training.driver`` drives.

``Trainer`` holds the run's objects and trains to each evaluation (``advance``); the driver does
resume, the metrics log, reporting, checkpoints, cancel and divergence. The step reads top to
bottom. The regularizers' hooks are called in spec order; only the regularizers that override a
hook are visited for it, so an unused hook costs nothing in the hot path.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from regcore.data import Dataset
from regcore.data.unlabeled import UnlabeledBatches
from regcore.ensemble.lone_resume import lone_state
from regcore.measures import Measures
from regcore.models import build_model
from regcore.regularizers.base import Regularizer, Step, TaskInfo
from regcore.regularizers.registry import build_regularizers
from regcore.training.context import RunContext
from regcore.training.device import choose_threads
from regcore.training.driver import drive
from regcore.training.metrics import data_loss, evaluate
from regcore.training.optim import build_optimizer, build_scheduler, current_lr
from regcore.training.result import Divergence, RunResult
from regcore.training.rng import rng_state, seed_all, set_rng_state

log = logging.getLogger(__name__)

HOOKS = (
    "transform_batch",
    "before_forward",
    "transform_loss",
    "penalty",
    "before_optimizer_step",
    "after_optimizer_step",
)


def _overrides(reg: Regularizer, hook: str) -> bool:
    return getattr(type(reg), hook) is not getattr(Regularizer, hook)


class Trainer:
    """Holds one run's objects; ``run()`` drives it and returns a ``RunResult``."""

    #: the best point is the lowest of this metric (``regcore.training.driver``)
    monitor: str | None = "val_loss"

    def __init__(self, ctx: RunContext):
        """A run of ``ctx.spec`` on ``ctx.data`` (ensemble members: the ensemble's data, bagged
        or not)."""
        self.ctx = ctx
        spec = self.spec = ctx.spec
        self.reporter = ctx.reporter
        self.device = ctx.device
        self.data: Dataset = ctx.data
        if ctx.cache_dir is not None:  # where a worker put fetched references (tie)
            self.data.extras.setdefault("cache_dir", Path(ctx.cache_dir))
        seed_all(spec.seed)  # after the data: mnist1d's generator reseeds the global RNGs
        self.shuffle = torch.Generator().manual_seed(spec.seed)
        steps = math.ceil(len(self.data.train) / spec.train.batch_size)
        #: the budget: ``train.steps`` optimizer steps (evaluated every ``eval_every``, points at
        #: step numbers), else ``train.epochs`` epochs (evaluated after each, points at epochs)
        self.budget_steps = spec.train.steps
        self.eval_every: int = spec.train.eval_every or spec.train.steps or 0  # 0: epochs
        self.epochs = math.ceil(spec.train.steps / steps) if spec.train.steps else spec.train.epochs
        self.task = TaskInfo(
            task=self.data.task,
            num_classes=self.data.num_classes,
            in_features=self.data.in_features,
            image_shape=self.data.image_shape,
            epochs=self.epochs,
            steps_per_epoch=steps,
            device=self.device,
        )
        model: nn.Module = build_model(
            spec.model,
            self.data.in_features,
            self.data.out_features,
            self.data.extras.get("input_shape"),
        )
        self.regs = build_regularizers(spec.regularizers, self.task)
        for reg in self.regs:
            reg.bind_data(self.data)
            model = reg.configure_model(model)
        self.model = model.to(self.device)
        self.threads = ctx.threads or spec.train.threads or choose_threads(self.model, self.device)
        self.optimizer = build_optimizer(self.model, spec.train)
        self.scheduler = build_scheduler(self.optimizer, spec.train)
        for reg in self.regs:
            reg.setup(self.model, self.optimizer)
        self.hooks = {h: [r for r in self.regs if _overrides(r, h)] for h in HOOKS}
        # semi-supervised: an unlabelled batch beside each labelled one, only when one is read
        self.unlabeled: UnlabeledBatches | None = None
        if self.data.unlabeled is not None and any(r.reads_unlabeled for r in self.regs):
            self.unlabeled = UnlabeledBatches(
                self.data.unlabeled, len(self.data.train), spec.train.batch_size, spec.seed
            )
        for reg in self.regs:  # sam skips a backward when no other term is in the loss
            if hasattr(reg, "peer_hooks"):
                reg.peer_hooks = self.hooks
        self.penalty_keys = _unique_keys([r.name for r in self.hooks["penalty"]])
        # when no regularizer may touch the weights after the last evaluation, the summary reuses
        # that evaluation instead of a second pass over every split
        self.reuse_last_eval = not any(
            _overrides(r, "finalize") or _overrides(r, "on_epoch_end") for r in self.regs
        )
        self.last_eval: tuple[int, dict[str, float]] | None = None
        self.epoch = 0  # full passes over the training set
        self.step_index = 0
        self.order: torch.Tensor | None = None  # the pass under way: its shuffled rows ...
        self.pos = 0  # ... and how many of them were trained on
        self.memorised_at: int | None = None  # the point where train_acc reached 1.0
        self.lr_sum = 0.0  # Σ of the rates of the optimizer steps taken (measures' effective_l2)
        self.best: tuple[float, int] | None = None  # (val_loss, epoch) of the "best" checkpoint
        self.timings = {"train_s": 0.0, "eval_s": 0.0, "checkpoint_s": 0.0}
        self.measures = Measures(spec.measure)

    # --- one step -----------------------------------------------------------------------------
    def train_step(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        sums: dict[str, list[torch.Tensor]],
        indices: torch.Tensor | None = None,
    ) -> None:
        step = Step(
            self.model, self.optimizer, self._loss_fn, x, y, self.epoch, self.step_index, indices
        )
        if self.unlabeled is not None:
            step.unlabeled = self.unlabeled.draw()
        for reg in self.hooks["transform_batch"]:
            step.x, step.y = reg.transform_batch(step.x, step.y, step)
        for reg in self.hooks["before_forward"]:
            reg.before_forward(step)
        step.outputs = self.model(step.x)
        loss = step.data_loss = self._loss_fn(step.outputs, step.y)
        for reg in self.hooks["transform_loss"]:
            loss = reg.transform_loss(loss, step)
        for key, reg in zip(self.penalty_keys, self.hooks["penalty"], strict=True):
            term = reg.penalty(step)
            if term is not None:
                loss = loss + term
                sums.setdefault(key, []).append(term.detach())
        # appended, summed once per epoch: cheaper than a tensor add per step
        sums.setdefault("train_batch_loss", []).append(loss.detach())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for reg in self.hooks["before_optimizer_step"]:
            reg.before_optimizer_step(step)
        self.lr_sum += float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.step()
        for reg in self.hooks["after_optimizer_step"]:
            reg.after_optimizer_step(step)
        self.step_index += 1

    def _loss_fn(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return data_loss(outputs, y, self.data.task)

    # --- one epoch (or one evaluation interval) ------------------------------------------------
    def train_epoch(self) -> tuple[dict[str, float], bool]:
        """Train to the next evaluation: one epoch, or under a steps budget the next
        ``eval_every`` steps (fewer where the budget ends), the passes running on across
        evaluations. Returns the mean batch losses and whether a cancel was seen."""
        self.model.train()
        train = self.data.train
        n, bs = len(train), self.spec.train.batch_size
        if self.budget_steps is None:
            todo = math.ceil(n / bs)
        else:
            todo = min(
                self.eval_every - self.step_index % self.eval_every,
                self.budget_steps - self.step_index,
            )
        sums: dict[str, list[torch.Tensor]] = {}
        batches = 0
        while batches < todo:
            if self.reporter.should_cancel():
                return {}, True
            if self.order is None:
                self.order = torch.randperm(n, generator=self.shuffle).to(self.device)
                self.pos = 0
            idx = self.order[self.pos : self.pos + bs]
            self.train_step(train.x[idx], train.y[idx], sums, idx)
            batches += 1
            self.pos += bs
            if self.pos >= n:  # the pass is over; under an epochs budget run() counts it
                self.order = None
                if self.budget_steps is not None:
                    self.epoch += 1
        means = {k: float(torch.stack(v).sum()) / batches for k, v in sums.items()}
        if not all(math.isfinite(v) for v in means.values()):
            bad = next(k for k, v in means.items() if not math.isfinite(v))
            where = f"epoch {self.epoch + 1}"
            if self.budget_steps is not None:
                where = f"the steps up to step {self.step_index}"
            raise Divergence(f"{bad} became {means[bad]} in {where}")
        return {
            (k if k == "train_batch_loss" else f"penalty_{k}"): v for k, v in means.items()
        }, False

    def end_epoch(self, batch_metrics: dict[str, float]) -> dict[str, float]:
        t0 = time.perf_counter()
        metrics = evaluate(self.model, self.data)
        if not math.isfinite(metrics["train_loss"]):
            raise Divergence(f"train_loss became {metrics['train_loss']} in epoch {self.epoch}")
        self.last_eval = (self.point(), dict(metrics))
        metrics.update(batch_metrics)
        for reg in self.regs:
            metrics.update(reg.extra_metrics(self.model))
        metrics.update(self.measures.compute(self))  # adds its own time to timings["measure_s"]
        stepped = False
        for reg in self.regs:
            stepped = reg.step_lr(self.epoch) or stepped
        if self.scheduler is not None and not stepped:
            self.scheduler.step()
        metrics["lr"] = current_lr(self.optimizer)  # the rate the next epoch trains with
        self.timings["eval_s"] += time.perf_counter() - t0
        return metrics

    # --- checkpoints --------------------------------------------------------------------------
    def train_state(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "rng": rng_state(self.generators()),
            "regularizers": [reg.state_dict() for reg in self.regs],
            "step_index": self.step_index,
            "lr_sum": self.lr_sum,
            "best": list(self.best) if self.best else None,
            # a steps budget's pass runs on across evaluations: where it stands
            "pass": {"epoch": self.epoch, "pos": self.pos, "order": self.order},
            "memorised_at": self.memorised_at,
        }

    def point(self) -> int:
        """The step of the metrics and checkpoints: the epoch, or under a steps budget the
        optimizer step."""
        return self.step_index if self.budget_steps is not None else self.epoch

    def rounds(self) -> int:
        """Evaluations so far (``checkpoint_every`` counts them)."""
        if self.budget_steps is None:
            return self.epoch
        return math.ceil(self.step_index / self.eval_every)

    def budget_left(self) -> bool:
        if self.budget_steps is not None:
            return self.step_index < self.budget_steps
        return self.epoch < self.spec.train.epochs

    def generators(self) -> dict[str, torch.Generator]:
        """The run's own random streams, saved in its checkpoints."""
        out = {"shuffle": self.shuffle}
        if self.unlabeled is not None:
            out["unlabeled"] = self.unlabeled.generator
        return out

    def weights(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load(self, weights: dict[str, torch.Tensor], st: dict[str, Any]) -> bool:
        """Continue from a checkpoint's weights and ``train_state``: a lone run's, or a pack
        member's (``regcore.ensemble.pack``, tagged with its pack), whose state is converted
        to this run's (``lone_state``); False, for the run to start over, when a pack member's
        is not one to go on from (it had ended)."""
        if "pack" in st:
            try:
                weights, st = lone_state(self, weights, st)
            except ValueError as err:
                log.info("the last checkpoint is a pack member's that this run cannot go on "
                         "from (%s): the run starts from epoch 0", err)  # fmt: skip
                return False
        self.model.load_state_dict(weights)
        self.optimizer.load_state_dict(st["optimizer"])
        if self.scheduler is not None and st["scheduler"] is not None:
            self.scheduler.load_state_dict(st["scheduler"])
        for reg, reg_state in zip(self.regs, st["regularizers"], strict=True):
            reg.load_state_dict(reg_state)
        set_rng_state(st["rng"], self.generators())
        self.step_index = int(st["step_index"])
        self.lr_sum = float(st.get("lr_sum", 0.0))
        self.best = (float(st["best"][0]), int(st["best"][1])) if st["best"] else None
        here = st["pass"]  # a steps budget's pass runs on across evaluations: where it stands
        self.epoch, self.pos, self.order = int(here["epoch"]), int(here["pos"]), here["order"]
        if self.order is not None:
            self.order = self.order.to(self.device)
        self.memorised_at = st.get("memorised_at")
        return True

    # --- the engine the driver runs (``regcore.training.driver``) -----------------------------
    def start_info(self) -> dict[str, Any]:
        # under a steps budget the points are steps: "epochs" is then the steps budget
        return {"epochs": self.spec.train.last_point}

    def advance(self) -> dict[str, float] | None:
        """Train to the next evaluation and evaluate; None when a cancel was seen."""
        t0 = time.perf_counter()
        batch_metrics, cancelled = self.train_epoch()
        self.timings["train_s"] += time.perf_counter() - t0
        if cancelled:
            return None
        if self.budget_steps is None:
            self.epoch += 1
        return self.end_epoch(batch_metrics)

    def cancel_reason(self) -> str:
        if self.budget_steps is not None:
            return f"cancelled after step {self.step_index}"
        return f"cancelled during epoch {self.epoch + 1}"

    def after_epoch(self, point: int, metrics: dict[str, float]) -> None:
        for reg in self.regs:
            reg.on_epoch_end(point, metrics, self.model)
        if self.spec.train.stop_when_memorised and metrics.get("train_acc", 0.0) >= 1.0:
            self.memorised_at = point

    def should_stop(self) -> bool:
        return self.memorised_at is not None or any(reg.should_stop() for reg in self.regs)

    @property
    def steps_run(self) -> int | None:
        """Optimizer steps taken, under a steps budget (the result reports them)."""
        return self.step_index if self.budget_steps is not None else None

    def finish(self, status: str) -> tuple[dict[str, float], int | None]:
        """Finalize the regularizers (early stopping restores its best) and measure the run."""
        for reg in self.regs:
            self.model = reg.finalize(self.model)
        best_epoch = next((e for r in self.regs if (e := r.best_epoch()) is not None), None)
        if best_epoch is None and self.best is not None:
            best_epoch = self.best[1]
        if (
            status == "succeeded"
            and self.reuse_last_eval
            and self.last_eval is not None
            and self.last_eval[0] == self.point()
        ):
            final = self.last_eval[1]
        else:
            final = evaluate(self.model, self.data) if self.point() else {}
        final = {**final, **self.measures.summary(self)}  # e.g. effective_l2 of the whole run
        for reg in self.regs if final else []:  # e.g. sgld's posterior predictive
            final.update(reg.final_metrics(self.model))
        if self.memorised_at is not None:
            final["memorised_at"] = float(self.memorised_at)
        return final, best_epoch

    def run(self, resume: bool = False) -> RunResult:
        """Train (continuing from ``checkpoints/last`` with ``resume``) and return the result."""
        return drive(self, resume)


def _unique_keys(names: list[str]) -> list[str]:
    """``l2``, ``l2_2``, ...: one metric key per penalty even if a name repeats."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return out
