"""Early stopping: stop after ``patience`` bad epochs and return the best epoch's weights."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from regcore.regularizer_specs import EarlyStoppingSpec
from regcore.regularizers.early_stopping import EarlyStopping, improved, resolve_mode
from regcore.spec import SpecError
from tests.regcore.runs import history, make_spec, train

OVERFIT = {
    "data": {"name": "mnist1d", "n_train": 300, "n_val": 300, "n_test": 300},
    "model": {"name": "mlp", "hidden": [256, 256]},
    "train": {"optimizer": "sgd", "lr": 0.1, "batch_size": 50, "epochs": 40, "device": "cpu"},
}


def test_improved_means_beyond_min_delta_in_the_direction_of_the_mode():
    assert improved(5.0, None, "min", 0.0)
    assert improved(0.9, 1.0, "min", 0.0)
    assert not improved(1.0, 1.0, "min", 0.0)
    assert not improved(0.95, 1.0, "min", 0.1)
    assert improved(0.85, 1.0, "min", 0.1)
    assert improved(0.8, 0.7, "max", 0.05)
    assert not improved(0.74, 0.7, "max", 0.05)
    assert not improved(0.6, 0.7, "max", 0.0)


def test_auto_mode_maximizes_accuracies_and_minimizes_everything_else():
    assert resolve_mode("val_acc", "auto") == "max"
    assert resolve_mode("val_loss", "auto") == "min"
    assert resolve_mode("gen_gap", "auto") == "min"
    assert resolve_mode("val_acc", "min") == "min"


def _stopper(**kw) -> EarlyStopping:
    return EarlyStopping(EarlyStoppingSpec(**kw), task=None)


def test_the_hook_stops_after_patience_bad_epochs_and_restores_the_best_weights():
    model = nn.Linear(2, 1)
    es = _stopper(patience=2)
    losses = [1.0, 0.5, 0.7, 0.6]
    snapshots = []
    for epoch, loss in enumerate(losses, 1):
        with torch.no_grad():
            model.weight.fill_(float(epoch))
        snapshots.append(model.weight.clone())
        es.on_epoch_end(epoch, {"val_loss": loss}, model)
        if epoch < 4:
            assert not es.should_stop()
    assert es.should_stop()
    assert es.best_epoch() == 2
    es.finalize(model)
    assert torch.equal(model.weight, snapshots[1])


def test_an_improvement_resets_the_count_of_bad_epochs():
    model = nn.Linear(2, 1)
    es = _stopper(patience=2)
    for epoch, loss in enumerate([1.0, 1.1, 0.9, 1.0], 1):
        es.on_epoch_end(epoch, {"val_loss": loss}, model)
    assert not es.should_stop()
    assert es.best_epoch() == 3


def test_restore_best_false_leaves_the_last_weights():
    model = nn.Linear(2, 1)
    es = _stopper(patience=1, restore_best=False)
    for epoch, loss in enumerate([1.0, 2.0], 1):
        with torch.no_grad():
            model.weight.fill_(float(epoch))
        es.on_epoch_end(epoch, {"val_loss": loss}, model)
    es.finalize(model)
    assert torch.all(model.weight == 2.0)


def test_the_state_dict_round_trips_through_a_fresh_instance():
    model = nn.Linear(2, 1)
    es = _stopper(patience=3)
    for epoch, loss in enumerate([1.0, 0.8, 0.9], 1):
        es.on_epoch_end(epoch, {"val_loss": loss}, model)
    other = _stopper(patience=3)
    other.load_state_dict(es.state_dict())
    other.on_epoch_end(4, {"val_loss": 0.95}, model)
    other.on_epoch_end(5, {"val_loss": 0.95}, model)
    assert other.should_stop() and other.best_epoch() == 2


def test_an_unknown_monitor_fails_with_the_available_metrics_named():
    es = _stopper(monitor="val_los")
    with pytest.raises(KeyError, match="val_los.*available: train_loss, val_loss"):
        es.on_epoch_end(1, {"val_loss": 1.0, "train_loss": 1.0}, nn.Linear(1, 1))


def test_an_overfit_run_stops_early_and_returns_the_best_val_epochs_weights(tmp_path, cache_dir):
    spec = make_spec(regularizers=[{"name": "early_stopping", "patience": 3}], **OVERFIT)
    result = train(spec, tmp_path, cache_dir)
    val = history(tmp_path)["val_loss"]
    best = min(range(len(val)), key=val.__getitem__) + 1
    assert result.epochs_run < 40
    assert result.epochs_run == best + 3
    assert result.best_epoch == best
    # the summary's metrics are the restored model's, not the last epoch's
    assert result.metrics["val_loss"] == pytest.approx(val[best - 1], abs=1e-6)
    assert result.metrics["val_loss"] < val[-1]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["best_epoch"] == best
    assert summary["metrics"]["val_loss"] == pytest.approx(min(val), abs=1e-6)


def test_monitoring_val_acc_maximizes_it(tmp_path, cache_dir):
    spec = make_spec(
        regularizers=[{"name": "early_stopping", "monitor": "val_acc", "patience": 3}], **OVERFIT
    )
    result = train(spec, tmp_path, cache_dir)
    acc = history(tmp_path)["val_acc"]
    best = max(range(len(acc)), key=acc.__getitem__) + 1  # first of the maxima
    assert result.best_epoch == best
    assert result.metrics["val_acc"] == pytest.approx(max(acc), abs=1e-6)


def test_a_spec_with_an_unknown_monitor_is_rejected_naming_what_exists():
    with pytest.raises(SpecError) as err:
        make_spec(regularizers=[{"name": "early_stopping", "monitor": "val_los"}])
    assert err.value.errors[0]["field"] == "regularizers[0].monitor"
    assert "available: " in err.value.errors[0]["message"]
    assert "val_loss" in err.value.errors[0]["message"]


def test_val_acc_is_no_monitor_for_a_regression_run():
    with pytest.raises(SpecError, match="regularizers\\[0\\].monitor"):
        make_spec(
            data={"name": "toy1d"}, regularizers=[{"name": "early_stopping", "monitor": "val_acc"}]
        )
