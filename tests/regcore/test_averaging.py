"""swa and ema beside early stopping, their per-epoch metrics, and resuming them."""

from __future__ import annotations

import pytest

from regcore.experiment import run as run_experiment
from regcore.spec import SpecError
from regcore.training.metrics import evaluate
from tests.regcore.runs import history, make_spec, trainer
from tests.regcore.test_resume import CancelAfter

#: a batch-norm MLP with dropout: averaging must disturb neither its RNG stream nor its stats
NOISY = dict(
    data={"name": "mnist1d", "n_train": 200, "n_val": 100, "n_test": 100},
    model={"name": "mlp", "hidden": [32], "batch_norm": True},
    train={
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "batch_size": 25,
        "epochs": 6,
        "device": "cpu",
    },
)
AVERAGERS = {
    "swa": {"name": "swa", "start": 0.3, "every": "epoch"},
    "ema": {"name": "ema", "decay": 0.9},
}


@pytest.mark.parametrize("name", ["swa", "ema"])
@pytest.mark.parametrize("order", ["before", "after"])
def test_the_spec_refuses_averaging_beside_early_stopping_that_restores_the_best(name, order):
    regs = [{"name": name}, {"name": "early_stopping"}]
    if order == "after":
        regs.reverse()
    with pytest.raises(SpecError) as err:
        make_spec(regularizers=regs)
    es = 1 if order == "before" else 0
    (e,) = err.value.errors
    assert e["field"] == f"regularizers[{es}].restore_best"
    assert name in e["message"] and "restore_best to false" in e["message"]
    regs[es]["restore_best"] = False
    assert [r.name for r in make_spec(regularizers=regs).regularizers] == [r["name"] for r in regs]


def test_early_stopping_without_restore_stops_and_keeps_the_average(tmp_path, cache_dir):
    spec = make_spec(
        data={"name": "mnist1d", "n_train": 100, "n_val": 100, "n_test": 100},
        model={"name": "mlp", "hidden": [128]},
        train={"optimizer": "sgd", "lr": 0.3, "batch_size": 10, "epochs": 40, "device": "cpu"},
        regularizers=[
            {"name": "ema", "decay": 0.9},
            {"name": "early_stopping", "patience": 2, "restore_best": False},
        ],
    )
    tr = trainer(spec, tmp_path, cache_dir)
    result = tr.run()
    assert result.epochs_run < 40  # it stopped early
    assert tr.model is tr.regs[0].averaged.module
    assert result.metrics == evaluate(tr.model, tr.data)
    assert result.best_epoch is not None and result.best_epoch <= result.epochs_run


@pytest.mark.parametrize("name", ["swa", "ema"])
def test_recording_the_average_leaves_the_raw_run_unchanged(name, tmp_path, cache_dir):
    regs = [{"name": "dropout", "p": 0.3}]
    run_experiment(
        make_spec(regularizers=regs, **NOISY),
        workdir=tmp_path / "plain",
        cache_dir=cache_dir,
        threads=1,
        checkpoint_every=0,
    )
    run_experiment(
        make_spec(regularizers=[*regs, AVERAGERS[name]], **NOISY),
        workdir=tmp_path / "avg",
        cache_dir=cache_dir,
        threads=1,
        checkpoint_every=0,
    )
    plain, avg = history(tmp_path / "plain"), history(tmp_path / "avg")
    for key, values in plain.items():
        assert avg[key] == values, key  # exactly: same weights, same random numbers
    averaged = avg[f"{name}_val_loss"]
    assert len(averaged) == (6 if name == "ema" else 5)  # swa from epoch ⌊0.3·6⌋ + 1 = 2
    assert averaged != plain["val_loss"][-len(averaged) :]


@pytest.mark.parametrize("name", ["swa", "ema"])
def test_a_resumed_averaging_run_ends_as_an_uninterrupted_one(name, tmp_path, cache_dir):
    reg = dict(AVERAGERS[name])
    if name == "swa":
        reg.update(swa_lr=0.02, anneal_epochs=3)  # cut mid-anneal: SWALR's state must resume
    spec = make_spec(regularizers=[{"name": "dropout", "p": 0.3}, reg], **NOISY)

    def go(workdir, **kw):
        return run_experiment(spec, workdir=workdir, cache_dir=cache_dir, threads=1, **kw)

    whole = go(tmp_path / "whole")
    cut = go(tmp_path / "cut", reporter=CancelAfter(3))
    assert cut.status == "cancelled" and cut.epochs_run == 3
    resumed = go(tmp_path / "cut", reporter=CancelAfter(10**6), resume=True)
    assert resumed.status == "succeeded" and resumed.epochs_run == 6
    assert resumed.metrics == whole.metrics
    assert history(tmp_path / "cut") == history(tmp_path / "whole")
    if name == "swa":
        lrs = history(tmp_path / "whole")["lr"]
        assert lrs[0] == pytest.approx(0.1) and 0.02 < lrs[2] < 0.1  # annealing at the cut
