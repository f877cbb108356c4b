"""An ensemble experiment trained as one batched model (``BatchedMembers``): its members'
metrics and the combined ensemble's under one reporter, the same results as ``EnsembleRun``."""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from regcore.data import Dataset, build_dataset
from regcore.ensemble.batched import BatchedMembers
from regcore.ensemble.combine import Ensemble, combine_outputs, error_decomposition
from regcore.ensemble.runner import MEMBER_EPOCH_KEYS, member_columns
from regcore.spec import ExperimentSpec
from regcore.training.checkpoint import load_checkpoint, save_checkpoint
from regcore.training.device import resolve_device
from regcore.training.loop import MetricsLog, RunResult
from regcore.training.metrics import SPARSITY_THRESHOLD, expected_calibration_error
from regcore.training.reporter import NullReporter, Reporter


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
    """An ensemble trained as one batched model; the same results as ``EnsembleRun``."""

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
        self.engine = BatchedMembers(
            spec.member_specs(),
            self.data,
            bagging=spec.ensemble.bagging,
            device=self.device,
            threads=threads or spec.train.threads,
        )
        self.threads = self.engine.threads
        self.best: tuple[float, int] | None = None

    def save(self, kind: str, metrics: dict[str, float]) -> None:
        t0 = time.perf_counter()
        state = {**self.engine.train_state(), "best": list(self.best) if self.best else None}
        info = save_checkpoint(
            self.workdir / "checkpoints",
            kind,
            self.engine.epoch,
            self.engine.weights(),
            state,
            metrics,
            self.spec_hash,
        )
        self.engine.timings["checkpoint_s"] += time.perf_counter() - t0
        self.reporter.on_checkpoint(info)

    def resume(self) -> bool:
        ckpt = load_checkpoint(self.workdir / "checkpoints", "last", self.spec_hash)
        if ckpt is None or not ckpt.train_state.get("batched"):
            return False
        self.engine.load(ckpt.model_state, ckpt.train_state)
        best = ckpt.train_state.get("best")
        self.best = (float(best[0]), int(best[1])) if best else None
        return True

    def run(self, resume: bool = False) -> RunResult:
        eng = self.engine
        torch.set_num_threads(self.threads)
        self.workdir.mkdir(parents=True, exist_ok=True)
        resumed = resume and self.resume()
        log = MetricsLog(self.workdir / "metrics.jsonl", keep_until=eng.epoch if resumed else 0)
        epochs = self.spec.train.epochs
        self.reporter.on_start(
            {
                "epochs": epochs,
                "start_epoch": eng.epoch,
                "device": str(self.device),
                "threads": self.threads,
                "resumed": resumed,
                "members": eng.k,
                "batched": True,
            }
        )
        status, reason = "succeeded", None
        metrics: dict[str, float] = {}
        while not eng.done:
            t0 = time.perf_counter()
            if eng.train_epoch(cancel_all=self.reporter.should_cancel):
                status, reason = "cancelled", f"cancelled during epoch {eng.epoch + 1}"
                break
            eng.timings["train_s"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            per, outs = eng.evaluate()
            member_metrics = eng.end_epoch(per)
            failed = next((s for s in eng.status if s.status == "failed"), None)
            if failed is not None:  # as one by one: a diverged member fails the ensemble
                log.close()
                return RunResult("failed", eng.epoch, None, metrics, failed.reason, self._timings())
            metrics = combined_metrics(outs, eng._weights(), self.data, self.spec.ensemble.combine)
            metrics.update(member_columns([st.metrics for st in eng.status], MEMBER_EPOCH_KEYS))
            ran = [m for m in member_metrics if m]
            metrics["train_batch_loss"] = sum(m["train_batch_loss"] for m in ran) / len(ran)
            metrics["lr"] = ran[0]["lr"]
            eng.timings["eval_s"] += time.perf_counter() - t0
            log.write(eng.epoch, metrics)
            self.reporter.on_epoch(eng.epoch, metrics)
            if self.best is None or metrics["val_loss"] < self.best[0]:
                self.best = (metrics["val_loss"], eng.epoch)
                if self.checkpoint_every:
                    self.save("best", metrics)
            if self.checkpoint_every and (eng.done or eng.epoch % self.checkpoint_every == 0):
                self.save("last", metrics)
        log.close()
        per_member = eng.finish()
        self.model = Ensemble(eng.models(), self.spec.ensemble.combine, self.data.task)
        final: dict[str, float] = {}
        if eng.epoch:
            final = combined_metrics(
                eng.final_outputs, eng._weights(), self.data, self.spec.ensemble.combine
            )
        final.update(member_columns(per_member))
        best_epoch = self.best[1] if self.best else None
        return RunResult(status, eng.epoch, best_epoch, final, reason, self._timings())

    def _timings(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.engine.timings.items()}
