"""The training loop: one experiment, start to finish (or resumed from its last checkpoint).

It reads top to bottom. The regularizers' hooks are called in spec order; only the regularizers
that override a hook are visited for it, so an unused hook costs nothing in the hot path.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from regcore import system_metrics
from regcore.data import Dataset, build_dataset
from regcore.data.unlabeled import UnlabeledBatches
from regcore.measures import Measures
from regcore.models import build_model
from regcore.regularizers.base import Regularizer, Step, TaskInfo
from regcore.regularizers.registry import build_regularizers
from regcore.spec import ExperimentSpec
from regcore.training.checkpoint import CheckpointInfo, load_checkpoint, save_checkpoint
from regcore.training.device import choose_threads, resolve_device
from regcore.training.metrics import data_loss, evaluate
from regcore.training.optim import build_optimizer, build_scheduler, current_lr
from regcore.training.reporter import NullReporter, Reporter
from regcore.training.rng import rng_state, seed_all, set_rng_state

HOOKS = (
    "transform_batch",
    "before_forward",
    "transform_loss",
    "penalty",
    "before_optimizer_step",
    "after_optimizer_step",
)


@dataclass
class RunResult:
    status: str  # succeeded, failed, cancelled
    epochs_run: int  # full passes over the training set
    best_epoch: int | None
    metrics: dict[str, float]
    reason: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    #: what ran (``regcore.provenance.environment``), set by ``regcore.experiment.run``
    environment: dict[str, Any] | None = None
    #: optimizer steps taken, set under a ``train.steps`` budget (its points are step numbers)
    steps_run: int | None = None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status,
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "metrics": self.metrics,
            "timings": self.timings,
        }
        if self.steps_run is not None:
            out["steps_run"] = self.steps_run
        if self.reason:
            out["reason"] = self.reason
        if self.environment is not None:
            out["environment"] = self.environment
        return out


class Divergence(RuntimeError):
    """The loss became NaN or infinite; retrying cannot help."""


def _overrides(reg: Regularizer, hook: str) -> bool:
    return getattr(type(reg), hook) is not getattr(Regularizer, hook)


class Trainer:
    """Holds one run's objects; ``run()`` trains and returns a ``RunResult``."""

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
        data: Dataset | None = None,
    ):
        """``data``: train on this dataset instead of building the spec's (ensemble members
        share the ensemble's data, bagged or not)."""
        self.spec = spec
        self.workdir = Path(workdir)
        self.ckpt_dir = self.workdir / "checkpoints"
        self.reporter = reporter or NullReporter()
        self.checkpoint_every = checkpoint_every
        self.spec_hash = spec.spec_hash()
        self.device = resolve_device(device or spec.train.device)

        if data is None:
            data = build_dataset(spec.data, spec.seed, cache_dir)
        self.data: Dataset = data.to(self.device)
        if cache_dir is not None:  # where a worker put fetched references (tie)
            self.data.extras.setdefault("cache_dir", Path(cache_dir))
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
        self.threads = threads or spec.train.threads or choose_threads(self.model, self.device)
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

    def save(self, kind: str, metrics: dict[str, float]) -> CheckpointInfo:
        t0 = time.perf_counter()
        info = save_checkpoint(
            self.ckpt_dir,
            kind,
            self.point(),
            self.model.state_dict(),
            self.train_state(),
            metrics,
            self.spec_hash,
        )
        self.timings["checkpoint_s"] += time.perf_counter() - t0
        self.reporter.on_checkpoint(info)
        return info

    def resume(self) -> bool:
        """Load ``last`` if a complete one of this spec exists; True when it did."""
        ckpt = load_checkpoint(self.ckpt_dir, "last", self.spec_hash)
        if ckpt is None:
            return False
        self.model.load_state_dict(ckpt.model_state)
        st = ckpt.train_state
        self.optimizer.load_state_dict(st["optimizer"])
        if self.scheduler is not None and st["scheduler"] is not None:
            self.scheduler.load_state_dict(st["scheduler"])
        for reg, reg_state in zip(self.regs, st["regularizers"], strict=True):
            reg.load_state_dict(reg_state)
        set_rng_state(st["rng"], self.generators())
        self.step_index = int(st["step_index"])
        self.lr_sum = float(st.get("lr_sum", 0.0))
        self.best = (float(st["best"][0]), int(st["best"][1])) if st["best"] else None
        self.epoch = ckpt.epoch
        if self.budget_steps is not None:
            here = st["pass"]
            self.epoch, self.pos, self.order = int(here["epoch"]), int(here["pos"]), here["order"]
            if self.order is not None:
                self.order = self.order.to(self.device)
        self.memorised_at = st.get("memorised_at")
        return True

    # --- the run ------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> RunResult:
        torch.set_num_threads(self.threads)
        self.workdir.mkdir(parents=True, exist_ok=True)
        resumed = resume and self.resume()
        log = MetricsLog(self.workdir / "metrics.jsonl", keep_until=self.point() if resumed else 0)
        self.reporter.on_start(
            {  # under a steps budget the points are steps: "epochs" is then the steps budget
                "epochs": self.spec.train.last_point,
                "start_epoch": self.point(),
                "device": str(self.device),
                "threads": self.threads,
                "resumed": resumed,
            }
        )
        status, reason = "succeeded", None
        metrics: dict[str, float] = {}
        # a run resumed after it stopped early (its last checkpoint is the stopping epoch) is done
        done = resumed and (
            self.memorised_at is not None or any(reg.should_stop() for reg in self.regs)
        )
        try:
            while self.budget_left() and not done:
                t0 = time.perf_counter()
                batch_metrics, cancelled = self.train_epoch()
                self.timings["train_s"] += time.perf_counter() - t0
                if cancelled:
                    status, reason = "cancelled", f"cancelled during epoch {self.epoch + 1}"
                    if self.budget_steps is not None:
                        reason = f"cancelled after step {self.step_index}"
                    break
                if self.budget_steps is None:
                    self.epoch += 1
                metrics = self.end_epoch(batch_metrics)
                point = self.point()
                log.write(point, metrics)
                self.reporter.on_epoch(point, metrics)
                for reg in self.regs:
                    reg.on_epoch_end(point, metrics, self.model)
                if self.best is None or metrics["val_loss"] < self.best[0]:
                    self.best = (metrics["val_loss"], point)
                    if self.checkpoint_every:
                        self.save("best", metrics)
                if self.spec.train.stop_when_memorised and metrics.get("train_acc", 0.0) >= 1.0:
                    self.memorised_at = point
                stop = self.memorised_at is not None or any(reg.should_stop() for reg in self.regs)
                if self.checkpoint_every and (stop or self.rounds() % self.checkpoint_every == 0):
                    self.save("last", metrics)
                if stop:
                    break
        except Divergence as err:
            log.close()
            return RunResult("failed", self.epoch, None, metrics, str(err), self._timings())
        if self.checkpoint_every and metrics and self.rounds() % self.checkpoint_every:
            self.save("last", metrics)
        log.close()
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
        result = RunResult(status, self.epoch, best_epoch, final, reason, self._timings())
        if self.budget_steps is not None:
            result.steps_run = self.step_index
        return result

    def _timings(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.timings.items()}


class MetricsLog:
    """``metrics.jsonl``: one ``{"step", "key", "value"}`` a line; on resume, lines past the
    checkpoint's epoch are dropped so that no point is written twice."""

    def __init__(self, path: Path, keep_until: int):
        lines: list[str] = []
        if keep_until and path.exists():
            lines = [
                ln
                for ln in path.read_text().splitlines()
                if ln and json.loads(ln)["step"] <= keep_until
            ]
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text("".join(ln + "\n" for ln in lines))
        os.replace(tmp, path)
        self.file = open(path, "a")  # noqa: SIM115 - held for the whole run
        self.system = system_metrics.monitor()  # None unless the run collects sys_* series

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if self.system is not None:  # into the caller's dict: its reporter sends them too
            metrics.update(self.system.sample())
        for key, value in metrics.items():
            self.file.write(json.dumps({"step": step, "key": key, "value": value}) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _unique_keys(names: list[str]) -> list[str]:
    """``l2``, ``l2_2``, ...: one metric key per penalty even if a name repeats."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return out


def run_experiment(
    spec: ExperimentSpec,
    *,
    workdir: Path,
    device: str | torch.device | None = None,
    reporter: Reporter | None = None,
    cache_dir: Path | None = None,
    threads: int | None = None,
    resume: bool = False,
    checkpoint_every: int = 1,
) -> RunResult:
    """Train ``spec``, writing ``metrics.jsonl``, ``summary.json`` and ``checkpoints/`` in
    ``workdir``. With ``resume``, continue from ``checkpoints/last`` when it exists."""
    trainer = Trainer(
        spec,
        workdir,
        device=device,
        reporter=reporter,
        cache_dir=cache_dir,
        threads=threads,
        checkpoint_every=checkpoint_every,
    )
    result = trainer.run(resume=resume)
    write_summary(workdir, result.summary())
    return result


def write_summary(workdir: Path, summary: dict[str, Any]) -> None:
    """``summary.json``, written under a temporary name and renamed: never half a file."""
    path = Path(workdir) / "summary.json"
    tmp = path.with_name(".summary.json.tmp")
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, path)
