"""One entry point for every kind of experiment a spec describes.

``run(spec, workdir, ...)`` dispatches: a plain single run (the Trainer), an ensemble (batched
when it can be, else member by member), a pretrain → fine-tune pipeline (source data, masked
reconstruction or contrastive), a multi-task run, or early stopping's retrain-on-train+val
recipe; then the inference extras (MC dropout) on the returned model. It writes
``summary.json`` in ``workdir`` beside ``metrics.jsonl`` and ``checkpoints/``, as
``regcore.training.loop.run_experiment`` does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from regcore.data import build_dataset
from regcore.ensemble.batched import why_not_batched
from regcore.ensemble.batched_run import BatchedEnsembleRun
from regcore.ensemble.members import build_trainer, with_train
from regcore.ensemble.runner import EnsembleRun
from regcore.inference.mc_dropout import mc_metrics
from regcore.provenance import environment
from regcore.spec import ExperimentSpec
from regcore.system_metrics import collecting
from regcore.training.device import resolve_device
from regcore.training.loop import RunResult, Trainer, write_summary
from regcore.training.reporter import NullReporter, Reporter
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
    workdir = Path(workdir)
    reporter = reporter or NullReporter()
    kw: dict[str, Any] = {"device": device, "cache_dir": cache_dir, "threads": threads}
    kind = kind_of(spec)
    model: nn.Module
    if kind in ("ensemble", "batched_ensemble"):
        cls = BatchedEnsembleRun if kind == "batched_ensemble" else EnsembleRun
        runner = cls(spec, workdir, reporter=reporter, checkpoint_every=checkpoint_every, **kw)
        result = runner.run(resume=resume)
        model, data = runner.model, runner.data
    elif kind in ("pretrain", "self_supervised"):
        result, model, data = _pretrain_finetune(
            spec, workdir, reporter, resume, checkpoint_every, kw
        )
    elif kind == "retrain_on_train_val":
        result, model, data = _retrain(spec, workdir, reporter, resume, checkpoint_every, kw)
    else:
        cls_t = MultiTaskTrainer if kind == "multitask" else Trainer
        trainer = cls_t(spec, workdir, reporter=reporter, checkpoint_every=checkpoint_every, **kw)
        result = trainer.run(resume=resume)
        model, data = trainer.model, trainer.data
        if kind == "multitask" and result.metrics:
            for split in ("train", "val", "test"):
                s = getattr(data, split)
                result.metrics[f"aux_{split}_loss"] = trainer.aux.split_loss(  # type: ignore[attr-defined]
                    model,
                    s.x,
                    trainer.aux.targets[split],  # type: ignore[attr-defined]
                )
    if spec.mc_dropout is not None and result.metrics:
        mc = spec.mc_dropout
        result.metrics.update(mc_metrics(model, data, mc.passes, mc.rule))
    result.model = model  # type: ignore[attr-defined]
    result.environment = environment(spec, device=data.train.x.device, data=data)
    write_summary(workdir, result.summary())
    return result


def _pretrain_finetune(
    spec: ExperimentSpec,
    workdir: Path,
    reporter: Reporter,
    resume: bool,
    every: int,
    kw: dict[str, Any],
) -> tuple[RunResult, nn.Module, Any]:
    """Stage 1 (reported as ``pretrain_<key>``), then fine-tuning under the usual keys."""
    dev = resolve_device(kw["device"] or spec.train.device)
    stage = PrefixReporter(reporter, "pretrain_")
    target = build_dataset(spec.data, spec.seed, kw["cache_dir"]).to(dev)
    if spec.pretrain is not None:
        src_spec = source_spec(spec)
        src_data = source_dataset(spec.pretrain, src_spec.seed, kw["cache_dir"]).to(dev)
        pre = build_trainer(
            src_spec, workdir / "pretrain", src_data, stage, **{**kw, "device": dev}
        )
        pre_result = pre.run()
        source_model, pre_metrics = pre.model, pre_result.metrics
        freeze, scale = spec.pretrain.freeze, spec.pretrain.body_lr_scale
        keep_head = not spec.pretrain.reset_head
    else:
        source_model, pre_metrics = pretrain_self_supervised(
            spec, target, stage, dev, workdir / "pretrain"
        )
        assert spec.self_supervised is not None
        freeze, scale, keep_head = spec.self_supervised.freeze, 1.0, False
    fine = build_trainer(spec, workdir, target, reporter, **{**kw, "device": dev})
    fine.checkpoint_every = every
    load_body(fine.model, source_model, keep_head)
    regroup(fine, freeze, scale)
    result = fine.run(resume=resume)
    result.metrics.update({f"pretrain_{k}": v for k, v in pre_metrics.items()})
    _append_stage_log(workdir, workdir / "pretrain" / "metrics.jsonl", "pretrain_")
    return result, fine.model, fine.data


def _retrain(
    spec: ExperimentSpec,
    workdir: Path,
    reporter: Reporter,
    resume: bool,
    every: int,
    kw: dict[str, Any],
) -> tuple[RunResult, nn.Module, Any]:
    """Find the epoch count with early stopping on train/val (reported as ``search_<key>``),
    then train a fresh model on train+val for that many epochs (TU Graz slides, 2nd recipe)."""
    dev = resolve_device(kw["device"] or spec.train.device)
    data = build_dataset(spec.data, spec.seed, kw["cache_dir"]).to(dev)
    search = build_trainer(
        spec, workdir / "search", data, PrefixReporter(reporter, "search_"), **{**kw, "device": dev}
    )
    found = search.run()
    epochs = found.best_epoch or found.epochs_run
    dump = spec.model_dump(mode="json")
    dump["regularizers"] = [r for r in dump["regularizers"] if r["name"] != "early_stopping"]
    dump["train"]["epochs"] = epochs
    retrain_spec = ExperimentSpec.model_validate(dump)
    merged = type(data.train)(
        torch.cat([data.train.x, data.val.x]), torch.cat([data.train.y, data.val.y])
    )
    rows = torch.arange(len(merged), device=dev)  # train rows, then val rows, of the pool
    trainer = build_trainer(
        retrain_spec, workdir, with_train(data, merged, rows), reporter, **{**kw, "device": dev}
    )
    trainer.checkpoint_every = every
    result = trainer.run(resume=resume)
    result.metrics.update({f"search_{k}": v for k, v in found.metrics.items()})
    result.metrics.update(retrain_epochs=float(epochs), train_examples=float(len(merged)))
    result.best_epoch = epochs
    _append_stage_log(workdir, workdir / "search" / "metrics.jsonl", "search_")
    return result, trainer.model, data


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
