"""A run cancelled mid-way and resumed ends exactly as an uninterrupted run."""

from __future__ import annotations

import json

from regcore.experiment import run as run_experiment
from regcore.training.reporter import NullReporter
from tests.regcore.runs import make_spec


class CancelAfter(NullReporter):
    """Asks to cancel after ``epoch`` complete epochs and ``steps`` steps of the next one, so the
    cancelled run has moved the weights and drawn random numbers past its last checkpoint."""

    def __init__(self, epoch: int, steps: int = 2):
        self.epoch, self.steps, self.done, self.asked, self.started = epoch, steps, 0, 0, None

    def on_start(self, info):
        self.started = info

    def on_epoch(self, epoch, metrics):
        self.done = epoch

    def should_cancel(self) -> bool:
        if self.done >= self.epoch:
            self.asked += 1
        return self.asked > self.steps


def _spec(optimizer: str):
    train = {
        "optimizer": optimizer,
        "lr": 0.05 if optimizer == "sgd" else 0.003,
        "momentum": 0.9 if optimizer == "sgd" else 0.0,
        "schedule": "cosine",
        "batch_size": 50,
        "epochs": 8,
        "device": "cpu",
    }
    regs = [
        {"name": "dropout", "p": 0.3},
        {"name": "l2", "strength": 1e-3},
        {"name": "early_stopping", "patience": 20},
    ]
    return make_spec(train=train, regularizers=regs)


def _run(spec, workdir, cache_dir, **kw):
    return run_experiment(spec, workdir=workdir, cache_dir=cache_dir, threads=1, **kw)


def test_a_cancelled_then_resumed_run_matches_an_uninterrupted_one(tmp_path, cache_dir):
    for optimizer in ("sgd", "adam"):
        spec = _spec(optimizer)
        whole = _run(spec, tmp_path / optimizer / "whole", cache_dir)

        work = tmp_path / optimizer / "interrupted"
        reporter = CancelAfter(3)
        cut = _run(spec, work, cache_dir, reporter=reporter)
        assert cut.status == "cancelled" and cut.epochs_run == 3
        assert "epoch 4" in cut.reason

        again = CancelAfter(10**6)
        resumed = _run(spec, work, cache_dir, reporter=again, resume=True)
        assert again.started["resumed"] and again.started["start_epoch"] == 3
        assert resumed.status == "succeeded"
        assert resumed.epochs_run == whole.epochs_run == 8
        assert resumed.best_epoch == whole.best_epoch
        assert resumed.metrics == whole.metrics
        whole_log = (tmp_path / optimizer / "whole" / "metrics.jsonl").read_text()
        assert (work / "metrics.jsonl").read_text() == whole_log
        summary = json.loads((work / "summary.json").read_text())
        assert (
            summary["metrics"]
            == json.loads((tmp_path / optimizer / "whole" / "summary.json").read_text())["metrics"]
        )


def test_resume_without_a_checkpoint_starts_from_scratch(tmp_path, cache_dir):
    spec = make_spec(train={"epochs": 2, "device": "cpu"})
    reporter = CancelAfter(10**6)
    result = _run(spec, tmp_path, cache_dir, reporter=reporter, resume=True)
    assert not reporter.started["resumed"] and result.epochs_run == 2


def test_a_checkpoint_of_another_spec_is_not_resumed(tmp_path, cache_dir):
    _run(make_spec(train={"epochs": 2, "device": "cpu"}), tmp_path, cache_dir)
    reporter = CancelAfter(10**6)
    other = make_spec(train={"epochs": 3, "device": "cpu", "lr": 0.2})
    result = _run(other, tmp_path, cache_dir, reporter=reporter, resume=True)
    assert not reporter.started["resumed"] and result.epochs_run == 3


def test_resuming_a_run_that_stopped_early_trains_no_further_epoch(tmp_path, cache_dir):
    es = {"name": "early_stopping", "patience": 1, "min_delta": 10.0}  # stops after epoch 2
    spec = make_spec(
        data={"name": "mnist1d", "n_train": 100, "n_val": 50, "n_test": 50}, regularizers=[es]
    )
    first = run_experiment(spec, workdir=tmp_path, cache_dir=cache_dir, threads=1)
    assert first.epochs_run == 2 < spec.train.epochs
    again = run_experiment(spec, workdir=tmp_path, cache_dir=cache_dir, threads=1, resume=True)
    assert again.epochs_run == 2
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 2
