"""One entry point for every kind of experiment a spec describes.

``run(spec, workdir, ...)`` dispatches: a plain single run (the Trainer), an ensemble (batched
when it can be, else member by member), a pretrain → fine-tune pipeline (source data, masked
reconstruction or contrastive), a multi-task run, or early stopping's retrain-on-train+val
recipe; then the inference extras (MC dropout) on the returned model. It writes
``summary.json`` in ``workdir`` beside ``metrics.jsonl`` and ``checkpoints/``.

The run's context (device, dataset, reporter; ``regcore.training.context``) is built once here;
every engine and stage takes it, or a stage of it, and ``regcore.training.driver`` drives each.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from regcore.ensemble.batched import why_not_batched
from regcore.ensemble.batched_run import BatchedEnsembleRun
from regcore.ensemble.members import with_train
from regcore.ensemble.runner import EnsembleRun
from regcore.inference.mc_dropout import mc_metrics
from regcore.provenance import environment
from regcore.spec import ExperimentSpec
from regcore.system_metrics import collecting
from regcore.training.context import RunContext
from regcore.training.device import resolve_device
from regcore.training.loop import Trainer
from regcore.training.reporter import Reporter
from regcore.training.result import RunResult, write_summary
from regcore.transfer.finetune import PrefixReporter, load_body, regroup
from regcore.transfer.multitask import MultiTaskTrainer
from regcore.transfer.pretrain import source_dataset, source_spec
from regcore.transfer.self_supervised import pretrain_self_supervised


def kind_of(spec: ExperimentSpec) -> str:
    es = next((r for r in spec.regularizers if r.name == "early_stopping"), None)
    if spec.pretrain is not None:
        return "pretrain"
    if spec.self_supervised is not None:
        return "self_supervised"
    if spec.multitask is not None:
        return "multitask"
    if es is not None and getattr(es, "retrain_on_train_val", False):
        return "retrain_on_train_val"
    if spec.ensemble.size > 1:
        batched = spec.ensemble.batched
        reason = why_not_batched(spec)
        if batched == "on" and reason is not None:
            raise ValueError(f"ensemble.batched is on, but {reason}; use auto or off")
        return "batched_ensemble" if batched != "off" and reason is None else "ensemble"
    return "single"


def run(
    spec: ExperimentSpec,
    workdir: Path,
    *,
    device: str | torch.device | None = None,
    reporter: Reporter | None = None,
    cache_dir: Path | None = None,
    threads: int | None = None,
    resume: bool = False,
    checkpoint_every: int = 1,
    system_metrics: bool = False,
) -> RunResult:
    """Run ``spec`` in ``workdir``; the result's ``model`` attribute is the returned model.
    ``system_metrics``: add the ``sys_*`` series to every epoch (``regcore.system_metrics``)."""
    if system_metrics:
        same: dict[str, Any] = {
            "device": device, "reporter": reporter, "cache_dir": cache_dir, "threads": threads
        }  # fmt: skip
        with collecting(resolve_device(device or spec.train.device)):
            return run(spec, workdir, resume=resume, checkpoint_every=checkpoint_every, **same)
    ctx = RunContext.build(
        spec,
        workdir,
        device=device,
        reporter=reporter,
        cache_dir=cache_dir,
        threads=threads,
        checkpoint_every=checkpoint_every,
    )
    kind = kind_of(spec)
    model: nn.Module
    if kind in ("ensemble", "batched_ensemble"):
        cls = BatchedEnsembleRun if kind == "batched_ensemble" else EnsembleRun
        runner = cls(ctx)
        result = runner.run(resume=resume)
        model = runner.model
    elif kind in ("pretrain", "self_supervised"):
        result, model = _pretrain_finetune(ctx, resume)
    elif kind == "retrain_on_train_val":
        result, model = _retrain(ctx, resume)
    else:
        trainer = (MultiTaskTrainer if kind == "multitask" else Trainer)(ctx)
        result = trainer.run(resume=resume)
        model = trainer.model
        if isinstance(trainer, MultiTaskTrainer) and result.metrics:
            result.metrics.update(trainer.aux_split_losses())
    data = ctx.data
    if spec.mc_dropout is not None and result.metrics:
        mc = spec.mc_dropout
        result.metrics.update(mc_metrics(model, data, mc.passes, mc.rule))
    result.model = model  # type: ignore[attr-defined]
    result.environment = environment(spec, device=ctx.device, data=data)
    write_summary(ctx.workdir, result.summary())
    return result


def _pretrain_finetune(ctx: RunContext, resume: bool) -> tuple[RunResult, nn.Module]:
    """Stage 1 (reported as ``pretrain_<key>``, in ``pretrain/``, no checkpoints), then
    fine-tuning under the usual keys."""
    spec = ctx.spec
    stage = ctx.stage(
        reporter=PrefixReporter(ctx.reporter, "pretrain_"),
        workdir=ctx.workdir / "pretrain",
        checkpoint_every=0,
    )
    if spec.pretrain is not None:
        src_spec = source_spec(spec)
        src_data = source_dataset(spec.pretrain, src_spec.seed, ctx.cache_dir).to(ctx.device)
        pre = Trainer(stage.stage(spec=src_spec, data=src_data))
        pre_result = pre.run()
        source_model = pre.model
        freeze, scale = spec.pretrain.freeze, spec.pretrain.body_lr_scale
        keep_head = not spec.pretrain.reset_head
    else:
        source_model, pre_result = pretrain_self_supervised(stage)
        assert spec.self_supervised is not None
        freeze, scale, keep_head = spec.self_supervised.freeze, 1.0, False
    pre_metrics = pre_result.metrics
    if pre_result.status == "failed":  # a diverged body cannot be fine-tuned
        _append_stage_log(ctx.workdir, stage.workdir / "metrics.jsonl", "pretrain_")
        return _stage_failed("pretraining", pre_result), source_model
    fine = Trainer(ctx)
    load_body(fine.model, source_model, keep_head)
    regroup(fine, freeze, scale)
    result = fine.run(resume=resume)
    result.metrics.update({f"pretrain_{k}": v for k, v in pre_metrics.items()})
    _append_stage_log(ctx.workdir, stage.workdir / "metrics.jsonl", "pretrain_")
    return result, fine.model


def _retrain(ctx: RunContext, resume: bool) -> tuple[RunResult, nn.Module]:
    """Find the epoch count with early stopping on train/val (reported as ``search_<key>``,
    in ``search/``), then train a fresh model on train+val for that many epochs (TU Graz
    slides, 2nd recipe)."""
    spec, data = ctx.spec, ctx.data
    search = Trainer(
        ctx.stage(
            reporter=PrefixReporter(ctx.reporter, "search_"),
            workdir=ctx.workdir / "search",
            checkpoint_every=0,
        )
    )
    found = search.run()
    if found.status == "failed":  # no epoch count was found
        _append_stage_log(ctx.workdir, ctx.workdir / "search" / "metrics.jsonl", "search_")
        return _stage_failed("the early-stopping search", found), search.model
    epochs = found.best_epoch or found.epochs_run
    dump = spec.model_dump(mode="json")
    dump["regularizers"] = [r for r in dump["regularizers"] if r["name"] != "early_stopping"]
    dump["train"]["epochs"] = epochs
    retrain_spec = ExperimentSpec.model_validate(dump)
    merged = type(data.train)(
        torch.cat([data.train.x, data.val.x]), torch.cat([data.train.y, data.val.y])
    )
    rows = torch.arange(len(merged), device=ctx.device)  # train rows, then val rows, of the pool
    trainer = Trainer(ctx.stage(spec=retrain_spec, data=with_train(data, merged, rows)))
    result = trainer.run(resume=resume)
    result.metrics.update({f"search_{k}": v for k, v in found.metrics.items()})
    result.metrics.update(retrain_epochs=float(epochs), train_examples=float(len(merged)))
    result.best_epoch = epochs
    _append_stage_log(ctx.workdir, ctx.workdir / "search" / "metrics.jsonl", "search_")
    return result, trainer.model


def _stage_failed(stage: str, result: RunResult) -> RunResult:
    """The run's result when one of its stages diverged: the run fails, and says which."""
    return RunResult("failed", 0, None, {}, f"{stage} failed: {result.reason}")


def _append_stage_log(workdir: Path, stage_log: Path, prefix: str) -> None:
    """Copy a stage's metrics into the run's ``metrics.jsonl`` under prefixed keys."""
    if not stage_log.exists():
        return
    lines = []
    for line in stage_log.read_text().splitlines():
        rec = json.loads(line)
        lines.append(json.dumps({**rec, "key": prefix + rec["key"]}) + "\n")
    with open(workdir / "metrics.jsonl", "a") as f:
        f.writelines(lines)
