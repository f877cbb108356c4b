"""The epoch driver: the one loop every run goes through.

A single run (``Trainer``, and the multi-task one), an ensemble trained member by member
(``EnsembleRun``), one trained as a batched model (``BatchedEnsembleRun``) and the stages of a
pipeline (pretraining, self-supervised pretraining, early stopping's search and retrain) are
*engines*: each knows how to train to its next evaluation and what its state is. ``drive`` does
the rest, in one place for all of them:

* resume: the ``last`` checkpoint of the spec, when one exists and the engine takes it;
* ``metrics.jsonl`` (cut back to the resumed point, so that no point is written twice) and the
  reporter's ``on_start`` / ``on_epoch`` / ``on_checkpoint``;
* the best point (lowest ``val_loss``), kept on the engine and saved in its state, and the
  ``best`` and ``last`` checkpoints, every ``checkpoint_every`` evaluations and at the end;
* cancellation (the engine sees the reporter's cancel between steps), early stops, and
  divergence: a NaN or infinite loss raises ``Divergence`` in the engine, and the run fails
  with its message.

What is written for one run's identity (its log, reporter and checkpoints) is an ``Outlet``; a
pack of sweep trials (``regcore.ensemble.pack``) writes through one per member.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import torch

from regcore.training.checkpoint import LoadedCheckpoint, load_checkpoint, save_checkpoint
from regcore.training.context import RunContext
from regcore.training.metrics_log import MetricsLog
from regcore.training.result import Divergence, RunResult

__all__ = ["Engine", "Outlet", "drive", "improves", "load_last"]


class Engine(Protocol):
    ctx: RunContext
    threads: int
    #: (monitored value, point) of the best evaluation so far; part of the engine's state
    best: tuple[float, int] | None
    #: the metric the best point is chosen by; None: no best point (a pretraining stage)
    monitor: str | None
    #: seconds spent per phase (``train_s``, ``eval_s``, ``checkpoint_s``): the result's
    timings: dict[str, float]

    @property
    def epoch(self) -> int:
        """Full passes over the training set so far."""
        ...

    def start_info(self) -> dict[str, Any]:
        """``on_start``'s ``epochs`` and whatever the engine adds (members, stage, ...)."""
        ...

    def point(self) -> int:
        """The step of the metrics and checkpoints: the epoch, or a step under a steps budget."""
        ...

    def rounds(self) -> int:
        """Evaluations so far (``checkpoint_every`` counts them)."""
        ...

    def budget_left(self) -> bool: ...

    def advance(self) -> dict[str, float] | None:
        """Train to the next evaluation and evaluate; the point's metrics, or None when a
        cancel was seen. Raises ``Divergence`` on a NaN/inf loss."""
        ...

    def cancel_reason(self) -> str: ...

    def after_epoch(self, point: int, metrics: dict[str, float]) -> None:
        """After the point is reported: what the regularizers do with it (early stopping)."""
        ...

    def should_stop(self) -> bool:
        """True when the run is done before its budget (early stopping, memorised, ...)."""
        ...

    def weights(self) -> dict[str, torch.Tensor]: ...

    def train_state(self) -> dict[str, Any]: ...

    def load(self, weights: dict[str, torch.Tensor], state: dict[str, Any]) -> bool:
        """Continue from a checkpoint's weights and state; False: not this engine's kind."""
        ...

    def finish(self, status: str) -> tuple[dict[str, float], int | None]:
        """After the loop: the final metrics and the best epoch."""
        ...


def improves(best: tuple[float, int] | None, value: float) -> bool:
    """Whether ``value`` of the monitored metric beats ``best`` (lower is better)."""
    return best is None or value < best[0]


class Outlet:
    """One run's identity, what the driver writes to: its ``metrics.jsonl``, its reporter and
    its checkpoints (``ctx.workdir``, ``ctx.reporter``, ``ctx.checkpoint_dir`` under the hash
    of ``ctx.spec``). A single run or an ensemble has one; a pack (``regcore.ensemble.pack``)
    one per member."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        self.log: MetricsLog | None = None

    def last_checkpoint(self) -> LoadedCheckpoint | None:
        """The complete ``last`` checkpoint of this spec, if there is one."""
        return load_checkpoint(self.ctx.checkpoint_dir, "last", self.ctx.spec.spec_hash())

    def open(self, point: int, resumed: bool, info: dict[str, Any]) -> None:
        """Start writing at ``point`` (the log cut back to it when ``resumed``); ``on_start``."""
        self.ctx.workdir.mkdir(parents=True, exist_ok=True)
        self.log = MetricsLog(self.ctx.workdir / "metrics.jsonl", point if resumed else 0)
        self.ctx.reporter.on_start(
            {"start_epoch": point, "device": str(self.ctx.device), "resumed": resumed, **info}
        )

    def report(self, point: int, metrics: dict[str, float]) -> None:
        assert self.log is not None, "open() first"
        self.log.write(point, metrics)
        self.ctx.reporter.on_epoch(point, metrics)

    def save(
        self,
        kind: str,
        point: int,
        weights: dict[str, torch.Tensor],
        state: dict[str, Any],
        metrics: dict[str, float],
    ) -> None:
        info = save_checkpoint(
            self.ctx.checkpoint_dir, kind, point, weights, state, metrics, self.ctx.spec.spec_hash()
        )
        self.ctx.reporter.on_checkpoint(info)

    def close(self) -> None:
        if self.log is not None:
            self.log.close()


def save(engine: Engine, outlet: Outlet, kind: str, metrics: dict[str, float]) -> None:
    t0 = time.perf_counter()
    outlet.save(kind, engine.point(), engine.weights(), engine.train_state(), metrics)
    engine.timings["checkpoint_s"] = engine.timings.get("checkpoint_s", 0.0) + (
        time.perf_counter() - t0
    )


def load_last(engine: Engine, outlet: Outlet) -> bool:
    """Continue ``engine`` from ``outlet``'s ``last`` checkpoint; False when there is none
    or the engine does not take it."""
    ckpt = outlet.last_checkpoint()
    return ckpt is not None and engine.load(ckpt.model_state, ckpt.train_state)


def drive(engine: Engine, resume: bool = False) -> RunResult:
    """Run ``engine`` to the end of its budget (or a stop, cancel or divergence); with
    ``resume``, from the spec's ``last`` checkpoint when there is one the engine takes."""
    out, every = Outlet(engine.ctx), engine.ctx.checkpoint_every
    torch.set_num_threads(engine.threads)
    resumed = resume and load_last(engine, out)
    out.open(engine.point(), resumed, {"threads": engine.threads, **engine.start_info()})
    status, reason = "succeeded", None
    metrics: dict[str, float] = {}
    # a run resumed after it stopped early (its last checkpoint is the stopping point) is done
    done = resumed and engine.should_stop()
    try:
        while engine.budget_left() and not done:
            evaluated = engine.advance()
            if evaluated is None:
                status, reason = "cancelled", engine.cancel_reason()
                break
            metrics = evaluated
            point = engine.point()
            out.report(point, metrics)
            engine.after_epoch(point, metrics)
            if engine.monitor is not None and improves(engine.best, metrics[engine.monitor]):
                engine.best = (metrics[engine.monitor], point)
                if every:
                    save(engine, out, "best", metrics)
            stop = engine.should_stop()
            if every and (stop or engine.rounds() % every == 0):
                save(engine, out, "last", metrics)
            if stop:
                break
    except Divergence as err:
        out.close()
        return RunResult("failed", engine.epoch, None, metrics, str(err), timings(engine))
    if every and metrics and engine.rounds() % every:
        save(engine, out, "last", metrics)
    out.close()
    final, best_epoch = engine.finish(status)
    result = RunResult(status, engine.epoch, best_epoch, final, reason, timings(engine))
    result.steps_run = getattr(engine, "steps_run", None)
    return result


def timings(engine: Engine) -> dict[str, float]:
    return {k: round(v, 4) for k, v in engine.timings.items()}
