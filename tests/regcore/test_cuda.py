"""On a CUDA GPU: a single run, a batched ensemble, a pack, resume with CUDA RNG state and an
out-of-memory failure. Skipped without a GPU; ``make gpu-check`` runs them with the GPU
benchmark."""

from __future__ import annotations

import json

import pytest
import torch

from regcore.ensemble.batched import why_not_batched
from regcore.ensemble.batched_run import BatchedEnsembleRun
from regcore.ensemble.pack import PackMember, run_pack
from regcore.ensemble.runner import EnsembleRun
from regcore.training.checkpoint import load_checkpoint
from regcore.training.context import RunContext
from regcore.training.loop import Trainer
from tests.regcore.runs import make_spec, train

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

TRAIN = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "batch_size": 50, "epochs": 3}
CUDA = {**TRAIN, "device": "cuda"}


def test_a_single_run_trains_on_the_gpu(tmp_path, cache_dir):
    spec = make_spec(train=CUDA, regularizers=[{"name": "dropout", "p": 0.2}])
    r = train(spec, tmp_path, cache_dir, checkpoint_every=1)
    assert r.status == "succeeded" and r.metrics["test_acc"] > 0.2
    ck = load_checkpoint(tmp_path / "checkpoints", "last")
    assert ck is not None and all(v.device.type == "cpu" for v in ck.model_state.values())


def test_a_batched_ensemble_on_the_gpu_matches_one_by_one(tmp_path, cache_dir):
    vary = [{}, {"train": {"lr": 0.05}}, {"regularizers": [{"name": "l2", "strength": 1e-2}]}]
    spec = make_spec(
        ensemble={"members": 3, "bagging": True, "vary": vary},
        regularizers=[{"name": "l2", "strength": 1e-3}, {"name": "label_smoothing"}],
        train=CUDA,
    )
    assert why_not_batched(spec) is None
    kw = {"cache_dir": cache_dir, "threads": 1, "checkpoint_every": 0}
    a = BatchedEnsembleRun(RunContext.build(spec, tmp_path / "a", **kw)).run()
    b = EnsembleRun(RunContext.build(spec, tmp_path / "b", **kw)).run().metrics
    assert a.status == "succeeded"
    for i in range(3):  # deterministic regularizers: the same trajectory up to rounding
        assert a.metrics[f"member{i}_test_loss"] == pytest.approx(
            b[f"member{i}_test_loss"], abs=1e-3
        )
    dropout = spec.model_copy(
        update={
            "regularizers": [
                *spec.regularizers,
                *make_spec(regularizers=[{"name": "dropout", "p": 0.2}]).regularizers,
            ]
        }
    )
    assert (
        BatchedEnsembleRun(RunContext.build(dropout, tmp_path / "d", **kw)).run().status
        == "succeeded"
    )


def test_a_pack_runs_on_the_gpu(tmp_path, cache_dir):
    specs = [make_spec(train=CUDA, regularizers=[{"name": "l2", "strength": s}]) for s in (0, 1e-2)]
    members = [PackMember(s, tmp_path / f"t{i}") for i, s in enumerate(specs)]
    results = run_pack(members, tmp_path / "pack", cache_dir=cache_dir, threads=1)
    assert [r.status for r in results] == ["succeeded", "succeeded"]
    assert results[0].metrics["test_loss"] != results[1].metrics["test_loss"]


def test_resume_continues_the_cuda_rng_stream(tmp_path, cache_dir):
    regs = [{"name": "dropout", "p": 0.3}, {"name": "input_noise", "sigma": 0.1}]
    spec = make_spec(train=CUDA, regularizers=regs)
    full = train(spec, tmp_path / "full", cache_dir, checkpoint_every=1)
    short = spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": 2})})
    train(short, tmp_path / "r", cache_dir, checkpoint_every=1)
    ckdir = tmp_path / "r" / "checkpoints"
    ck = load_checkpoint(ckdir, "last")
    assert ck is not None and "cuda" in ck.train_state["rng"]
    side = json.loads((ckdir / "last.json").read_text())
    side["spec_hash"] = spec.spec_hash()
    (ckdir / "last.json").write_text(json.dumps(side))
    torch.cuda.manual_seed_all(12345)  # whatever the stream is now, resume must restore it
    resumed = train(spec, tmp_path / "r", cache_dir, checkpoint_every=1, resume=True)
    assert resumed.metrics["test_loss"] == pytest.approx(full.metrics["test_loss"], abs=1e-6)


def test_out_of_memory_fails_the_run_and_leaves_the_device_usable(tmp_path, cache_dir):
    spec = make_spec(train=CUDA)
    hog: list[torch.Tensor] = []
    try:
        chunk = 1 << 30
        while chunk >= 1 << 20:  # take all of the device's memory, in ever smaller pieces
            try:
                hog.append(torch.empty(chunk, dtype=torch.uint8, device="cuda"))
            except torch.OutOfMemoryError:
                chunk //= 2
        with pytest.raises(torch.OutOfMemoryError):
            Trainer(RunContext.build(spec, tmp_path / "oom", cache_dir=cache_dir, threads=1)).run()
    finally:
        hog.clear()
        torch.cuda.empty_cache()
    assert train(spec, tmp_path / "after", cache_dir).status == "succeeded"
