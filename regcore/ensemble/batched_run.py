"""An ensemble experiment trained as one batched model (``BatchedMembers``): its members'
metrics and the combined ensemble's under one reporter, the same results as ``EnsembleRun``."""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F

from regcore.data import Dataset
from regcore.ensemble.batched import BatchedMembers
from regcore.ensemble.combine import Ensemble, combine_outputs, error_decomposition
from regcore.ensemble.runner import MEMBER_EPOCH_KEYS, member_columns
from regcore.training.context import RunContext
from regcore.training.driver import drive
from regcore.training.metrics import SPARSITY_THRESHOLD, expected_calibration_error
from regcore.training.result import Divergence, RunResult


@torch.no_grad()
def combined_metrics(
    outs: dict[str, torch.Tensor], weights: torch.Tensor | None, data: Dataset, how: str
) -> dict[str, float]:
    """The single-run metric keys of the combined ensemble, from the members' outputs."""
    task = data.task
    m: dict[str, float] = {}
    test_out = None
    for split in ("train", "val", "test"):
        comb = combine_outputs(outs[split], how, task)
        y = getattr(data, split).y
        m[f"{split}_loss"] = float(
            F.cross_entropy(comb, y) if task == "classification" else F.mse_loss(comb, y)
        )
        if task == "classification":
            m[f"{split}_acc"] = float((comb.argmax(1) == y).float().mean())
        if split == "test":
            test_out = comb
    m["gen_gap"] = m["val_loss"] - m["train_loss"]
    if task == "classification" and test_out is not None:
        probs = test_out.softmax(1)
        m["ece"] = expected_calibration_error(probs, data.test.y)
        m["confidence"] = float(probs.max(1).values.mean())
    if weights is not None:
        flat = weights.reshape(-1)
        m.update(
            weight_l2=float(flat.norm(2)),
            weight_l1=float(flat.abs().sum()),
            sparsity=float((flat.abs() < SPARSITY_THRESHOLD).float().mean()),
        )
    if task == "regression":
        m.update(error_decomposition(outs["test"], data.test.y))
    return m


class BatchedEnsembleRun:
    """An ensemble trained as one batched model, the same results as ``EnsembleRun``: an
    engine of ``regcore.training.driver`` (``run()`` drives it)."""

    monitor: str | None = "val_loss"

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        self.spec = ctx.spec
        self.data = ctx.data
        self.engine = BatchedMembers(
            ctx.spec.member_specs(),
            self.data,
            bagging=ctx.spec.ensemble.bagging,
            device=ctx.device,
            threads=ctx.threads or ctx.spec.train.threads,
        )
        self.threads = self.engine.threads
        self.timings = self.engine.timings
        self.best: tuple[float, int] | None = None

    @property
    def epoch(self) -> int:
        return self.engine.epoch

    # --- checkpoints ----------------------------------------------------------------------
    def weights(self) -> dict[str, torch.Tensor]:
        return self.engine.weights()

    def train_state(self) -> dict[str, Any]:
        return {**self.engine.train_state(), "best": list(self.best) if self.best else None}

    def load(self, weights: dict[str, torch.Tensor], state: dict[str, Any]) -> bool:
        if not state.get("batched"):  # a member-by-member ensemble's checkpoint
            return False
        self.engine.load(weights, state)
        best = state.get("best")
        self.best = (float(best[0]), int(best[1])) if best else None
        return True

    # --- the engine the driver runs -------------------------------------------------------
    def start_info(self) -> dict[str, Any]:
        return {"epochs": self.spec.train.epochs, "members": self.engine.k, "batched": True}

    def point(self) -> int:
        return self.engine.epoch

    def rounds(self) -> int:
        return self.engine.epoch

    def budget_left(self) -> bool:
        return self.engine.epoch < self.spec.train.epochs

    def advance(self) -> dict[str, float] | None:
        """Every running member's epoch, then the members' and the combined metrics from one
        evaluation; a member that diverged fails the ensemble, as one by one."""
        eng = self.engine
        t0 = time.perf_counter()
        if eng.train_epoch(cancel_all=self.ctx.reporter.should_cancel):
            return None
        eng.timings["train_s"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        per, outs = eng.evaluate()
        member_metrics = eng.end_epoch(per)
        failed = next((s for s in eng.status if s.status == "failed"), None)
        if failed is not None:
            raise Divergence(failed.reason or "a member diverged")
        metrics = combined_metrics(outs, eng._weights(), self.data, self.spec.ensemble.combine)
        metrics.update(member_columns([st.metrics for st in eng.status], MEMBER_EPOCH_KEYS))
        ran = [m for m in member_metrics if m]
        metrics["train_batch_loss"] = sum(m["train_batch_loss"] for m in ran) / len(ran)
        metrics["lr"] = ran[0]["lr"]
        eng.timings["eval_s"] += time.perf_counter() - t0
        return metrics

    def cancel_reason(self) -> str:
        return f"cancelled during epoch {self.engine.epoch + 1}"

    def after_epoch(self, point: int, metrics: dict[str, float]) -> None:
        pass

    def should_stop(self) -> bool:
        return not any(self.engine.active)

    def run(self, resume: bool = False) -> RunResult:
        return drive(self, resume)

    def finish(self, status: str) -> tuple[dict[str, float], int | None]:
        eng = self.engine
        per_member = eng.finish()
        self.model = Ensemble(eng.models(), self.spec.ensemble.combine, self.data.task)
        final: dict[str, float] = {}
        if eng.epoch:
            final = combined_metrics(
                eng.final_outputs, eng._weights(), self.data, self.spec.ensemble.combine
            )
        final.update(member_columns(per_member))
        return final, self.best[1] if self.best else None
