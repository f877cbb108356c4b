"""train.steps, train.eval_every and train.stop_when_memorised (Prince Fig. 9.5's protocol)."""

from __future__ import annotations

import json

import pytest

from regcore.ensemble.batched import why_not_batched_members
from regcore.experiment import run as run_experiment
from regcore.spec import ExperimentSpec, SpecError
from regcore.training.context import RunContext
from regcore.training.loop import Trainer
from regcore.training.reporter import NullReporter
from tests.regcore.runs import make_spec

DATA = {"name": "mnist1d", "n_train": 250, "n_val": 50, "n_test": 100}  # 5 steps an epoch at 50


def _steps_spec(**train):
    return make_spec(
        data=DATA,
        model={"name": "mlp", "hidden": [32]},
        train={"lr": 0.1, "batch_size": 50, "device": "cpu", **train},
    )


def _points(workdir) -> list[int]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return sorted({json.loads(ln)["step"] for ln in lines})


def test_a_steps_budget_takes_exactly_that_many_optimizer_steps(tmp_path, cache_dir):
    spec = _steps_spec(steps=23, eval_every=5)
    trainer = Trainer(
        RunContext.build(spec, tmp_path, cache_dir=cache_dir, threads=1, checkpoint_every=0)
    )
    taken = []
    trainer.optimizer.register_step_post_hook(lambda *a: taken.append(1))
    result = trainer.run()
    assert len(taken) == 23 == result.steps_run
    assert result.epochs_run == 4  # 23 steps of 5 a pass: 4 whole passes and 3 steps
    assert _points(tmp_path) == [5, 10, 15, 20, 23]  # every eval_every steps, and at the end
    assert result.summary()["steps_run"] == 23


def test_an_epochs_budget_records_epochs_as_before(tmp_path, cache_dir):
    result = run_experiment(
        make_spec(data=DATA, train={"epochs": 3, "batch_size": 50, "device": "cpu"}),
        workdir=tmp_path,
        cache_dir=cache_dir,
        threads=1,
    )
    assert _points(tmp_path) == [1, 2, 3] and result.steps_run is None
    assert "steps_run" not in result.summary()


def test_passes_run_on_across_evaluations_each_example_once_a_pass(tmp_path, cache_dir):
    """eval_every 3 does not divide the 5 steps of a pass: the pass is not restarted."""
    spec = _steps_spec(steps=10, eval_every=3)
    trainer = Trainer(
        RunContext.build(spec, tmp_path, cache_dir=cache_dir, threads=1, checkpoint_every=0)
    )
    seen: list[int] = []
    step = trainer.train_step

    def record(x, y, sums, indices=None):
        seen.extend(indices.tolist())
        step(x, y, sums, indices)

    trainer.train_step = record  # type: ignore[method-assign]
    trainer.run()
    assert sorted(seen[:250]) == list(range(250)) == sorted(seen[250:])


class CancelAt(NullReporter):
    def __init__(self, after_calls: int):
        self.calls, self.after, self.started = 0, after_calls, None

    def on_start(self, info):
        self.started = info

    def should_cancel(self) -> bool:
        self.calls += 1
        return self.calls > self.after


def test_a_steps_run_cancelled_mid_pass_resumes_to_the_same_end(tmp_path, cache_dir):
    spec = _steps_spec(steps=17, eval_every=4)
    whole = run_experiment(spec, workdir=tmp_path / "whole", cache_dir=cache_dir, threads=1)
    work = tmp_path / "cut"
    cut = run_experiment(spec, workdir=work, cache_dir=cache_dir, threads=1, reporter=CancelAt(10))
    assert cut.status == "cancelled" and "after step 10" in cut.reason
    again = CancelAt(10**6)
    resumed = run_experiment(
        spec, workdir=work, cache_dir=cache_dir, threads=1, reporter=again, resume=True
    )
    assert again.started["resumed"] and again.started["start_epoch"] == 8
    assert again.started["epochs"] == 17
    assert resumed.steps_run == 17 and resumed.metrics == whole.metrics
    assert (work / "metrics.jsonl").read_text() == (tmp_path / "whole/metrics.jsonl").read_text()


def test_stop_when_memorised_stops_at_the_first_evaluation_with_train_acc_1(tmp_path, cache_dir):
    small = {**DATA, "n_train": 100}
    train = {"steps": 2000, "eval_every": 20, "lr": 0.2, "batch_size": 50, "device": "cpu"}
    model = {"name": "mlp", "hidden": [32]}
    full = run_experiment(
        make_spec(data=small, model=model, train=train),
        workdir=tmp_path / "full",
        cache_dir=cache_dir,
        threads=1,
    )
    assert full.steps_run == 2000 and "memorised_at" not in full.metrics
    stop = run_experiment(
        make_spec(data=small, model=model, train={**train, "stop_when_memorised": True}),
        workdir=tmp_path / "stop",
        cache_dir=cache_dir,
        threads=1,
    )
    lines = [json.loads(ln) for ln in (tmp_path / "stop/metrics.jsonl").read_text().splitlines()]
    acc = {r["step"]: r["value"] for r in lines if r["key"] == "train_acc"}
    assert stop.steps_run < 2000 and stop.metrics["memorised_at"] == stop.steps_run
    assert acc[stop.steps_run] == 1.0 and all(v < 1.0 for s, v in acc.items() if s < stop.steps_run)


def _errors(**overrides) -> dict[str, str]:
    with pytest.raises(SpecError) as err:
        make_spec(**overrides)
    return {e["field"]: e["message"] for e in err.value.errors}


def test_bad_budgets_are_refused_naming_the_field():
    assert "not both" in _errors(train={"steps": 10, "epochs": 3})["train.steps"]
    assert "train.steps" in _errors(train={"eval_every": 3})["train.eval_every"]
    assert "exceeds" in _errors(train={"steps": 5, "eval_every": 6})["train.eval_every"]
    assert "constant" in _errors(train={"steps": 5, "schedule": "cosine"})["train.schedule"]
    assert "single model" in _errors(train={"steps": 5}, ensemble={"members": 2})["train.steps"]
    regression = _errors(data={"name": "toy1d"}, train={"stop_when_memorised": True})
    assert "regression" in regression["train.stop_when_memorised"]


def test_a_steps_spec_dumps_without_epochs_and_validates_again():
    spec = _steps_spec(steps=12, eval_every=4)
    dump = spec.model_dump(mode="json")
    assert "epochs" not in dump["train"] and dump["train"]["steps"] == 12
    assert ExperimentSpec.model_validate(dump) == spec
    plain = make_spec()  # the new fields at their defaults leave an epochs spec's dump alone
    assert not {"steps", "eval_every", "stop_when_memorised"} & set(plain.model_dump()["train"])


def test_the_batched_engine_refuses_a_steps_budget():
    spec = _steps_spec(steps=12)
    assert "train.steps" in (why_not_batched_members([spec, spec]) or "")
    memo = make_spec(train={"stop_when_memorised": True, "device": "cpu"})
    assert "stop_when_memorised" in (why_not_batched_members([memo, memo]) or "")
