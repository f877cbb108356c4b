"""A diverging run fails cleanly: status failed, the epoch named, no exception."""

from __future__ import annotations

import json

from tests.regcore.runs import make_spec, train


def test_a_huge_learning_rate_fails_the_run_naming_the_epoch(tmp_path, cache_dir):
    spec = make_spec(
        data={"name": "toy1d"},
        model={"name": "mlp", "hidden": [32]},
        train={"lr": 10.0, "momentum": 0.9, "batch_size": 10, "epochs": 5, "device": "cpu"},
    )
    result = train(spec, tmp_path, cache_dir)
    assert result.status == "failed"
    assert result.epochs_run < 5
    assert f"epoch {result.epochs_run + 1}" in result.reason
    assert "nan" in result.reason or "inf" in result.reason
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["reason"] == result.reason


def test_divergence_in_the_first_epoch_names_epoch_1(tmp_path, cache_dir):
    spec = make_spec(
        model={"name": "mlp", "hidden": [64]},
        train={"lr": 10.0, "momentum": 0.9, "batch_size": 10, "epochs": 3, "device": "cpu"},
    )
    result = train(spec, tmp_path, cache_dir)
    assert result.status == "failed" and result.epochs_run == 0
    assert "epoch 1" in result.reason
