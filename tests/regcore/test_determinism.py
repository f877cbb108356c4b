"""Same spec and seed on the same device: the same metrics, value for value."""

from __future__ import annotations

from tests.regcore.runs import history, make_spec, train

REGS = [{"name": "l2", "strength": 1e-3}, {"name": "dropout", "p": 0.3}]


def _values(workdir):
    h = history(workdir)
    h.pop("train_batch_loss", None)  # also deterministic, but keep the comparison on the contract
    return h


def test_the_same_spec_twice_writes_identical_metrics(tmp_path, cache_dir):
    spec = make_spec(regularizers=REGS, train={"epochs": 3, "device": "cpu", "momentum": 0.9})
    a = train(spec, tmp_path / "a", cache_dir)
    b = train(spec, tmp_path / "b", cache_dir)
    assert (tmp_path / "a" / "metrics.jsonl").read_text() == (
        tmp_path / "b" / "metrics.jsonl"
    ).read_text()
    assert a.metrics == b.metrics
    assert len(_values(tmp_path / "a")["val_loss"]) == 3


def test_another_seed_gives_other_metrics(tmp_path, cache_dir):
    spec = make_spec(regularizers=REGS, train={"epochs": 2, "device": "cpu"})
    a = train(spec, tmp_path / "a", cache_dir)
    b = train(spec.model_copy(update={"seed": 1}), tmp_path / "b", cache_dir)
    assert a.metrics["train_loss"] != b.metrics["train_loss"]


def test_the_summary_of_a_plain_run_holds_the_last_epochs_evaluation(tmp_path, cache_dir):
    spec = make_spec(regularizers=REGS, train={"epochs": 2, "device": "cpu"})
    result = train(spec, tmp_path, cache_dir)
    last = {k: v[-1] for k, v in history(tmp_path).items()}
    assert {"train_loss", "val_acc", "ece", "weight_l2"} <= set(result.metrics)
    assert all(result.metrics[k] == last[k] for k in result.metrics)
    assert "lr" not in result.metrics and "train_batch_loss" not in result.metrics
