"""swa: the running average, the hook contract (AveragedModel, SWALR, update_bn), the effect."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from regcore.regularizers.swa import running_average
from regcore.training.metrics import evaluate
from tests.regcore.runs import history, make_spec, train, trainer

OVERFIT = dict(
    data={"name": "mnist1d", "n_train": 200, "n_val": 200, "n_test": 500},
    model={"name": "mlp", "hidden": [128]},
    train={"optimizer": "sgd", "lr": 0.1, "batch_size": 25, "epochs": 30, "device": "cpu"},
)


def test_running_average_is_the_mean_of_all_values():
    values = [torch.tensor(v) for v in (1.0, 4.0, 7.0)]
    avg = values[0]
    for n, v in enumerate(values[1:], start=1):
        avg = running_average(avg, v, n)
    assert float(avg) == pytest.approx(4.0)


def test_finalize_returns_the_average_of_the_epoch_end_weights(tmp_path, cache_dir):
    spec = make_spec(
        regularizers=[{"name": "swa", "start": 0.5}],
        **{**OVERFIT, "train": {**OVERFIT["train"], "epochs": 4}},
    )
    tr = trainer(spec, tmp_path, cache_dir)
    swa = tr.regs[0]
    snapshots = []
    for _ in range(4):
        tr.train_epoch()
        tr.epoch += 1
        tr.end_epoch({})
        swa.on_epoch_end(tr.epoch, {}, tr.model)
        snapshots.append([p.detach().clone() for p in tr.model.parameters()])
    assert swa.start_epoch == 3 and int(swa.averaged.n_averaged) == 2
    final = swa.finalize(tr.model)
    for p, a, b in zip(final.parameters(), snapshots[2], snapshots[3], strict=True):
        assert torch.allclose(p, (a + b) / 2, atol=1e-6)


def test_swa_lr_anneals_the_learning_rate(tmp_path, cache_dir):
    spec = make_spec(
        regularizers=[{"name": "swa", "start": 0.5, "swa_lr": 0.01}],
        **{**OVERFIT, "train": {**OVERFIT["train"], "epochs": 6}},
    )
    result = train(spec, tmp_path, cache_dir)
    lrs = history(tmp_path)["lr"]
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.01)
    assert result.status == "succeeded"


def test_batch_norm_statistics_are_recomputed_for_the_average(tmp_path, cache_dir):
    model = {"name": "mlp", "hidden": [32], "batch_norm": True}
    spec = make_spec(regularizers=[{"name": "swa", "start": 0.5}], model=model)
    tr = trainer(spec, tmp_path, cache_dir)
    for _ in range(spec.train.epochs):
        tr.train_epoch()
        tr.epoch += 1
        tr.regs[0].on_epoch_end(tr.epoch, {}, tr.model)
    final = tr.regs[0].finalize(tr.model)
    bn = next(m for m in final.modules() if isinstance(m, nn.BatchNorm1d))
    raw_bn = next(m for m in tr.model.modules() if isinstance(m, nn.BatchNorm1d))
    # update_bn recomputes from scratch, so the averaged model's statistics are its own
    assert not torch.allclose(bn.running_mean, raw_bn.running_mean)
    assert len(tr.regs[0].batches) == tr.task.steps_per_epoch


@pytest.mark.parametrize("seed", [0, 1])
def test_the_averaged_model_has_lower_test_loss_than_the_last_iterate(tmp_path, cache_dir, seed):
    spec = make_spec(seed=seed, regularizers=[{"name": "swa", "start": 0.5}], **OVERFIT)
    result = train(spec, tmp_path, cache_dir)
    last_iterate = history(tmp_path)["test_loss"][-1]
    assert result.metrics["test_loss"] < 0.97 * last_iterate


def test_swa_val_loss_appears_once_averaging_starts_and_includes_that_epoch(tmp_path, cache_dir):
    spec = make_spec(
        regularizers=[{"name": "swa", "start": 0.5}],
        **{**OVERFIT, "train": {**OVERFIT["train"], "epochs": 4}},
    )
    tr = trainer(spec, tmp_path, cache_dir)
    swa = tr.regs[0]
    seen = []
    for _ in range(4):
        tr.train_epoch()
        tr.epoch += 1
        metrics = tr.end_epoch({})
        seen.append("swa_val_loss" in metrics)
        if tr.epoch == 3:
            # the first averaged epoch: the average is that epoch's weights, so the losses agree
            assert metrics["swa_n_averaged"] == 1.0
            assert metrics["swa_val_loss"] == pytest.approx(metrics["val_loss"], rel=1e-6)
        swa.on_epoch_end(tr.epoch, metrics, tr.model)
        assert int(swa.averaged.n_averaged) == max(0, tr.epoch - 2)  # averaged once per epoch
    assert seen == [False, False, True, True]
    assert metrics["swa_val_loss"] == pytest.approx(
        evaluate(swa.averaged.module, tr.data)["val_loss"], rel=1e-6
    )


def test_while_averaging_only_swalr_steps_and_the_logged_lr_is_the_next_epochs(tmp_path, cache_dir):
    spec = make_spec(
        data={"name": "mnist1d", "n_train": 100, "n_val": 50, "n_test": 50},
        train={
            "optimizer": "sgd",
            "lr": 0.1,
            "batch_size": 50,
            "epochs": 6,
            "schedule": "cosine",
            "device": "cpu",
        },
        regularizers=[{"name": "swa", "start": 0.5, "swa_lr": 0.01, "anneal_epochs": 2}],
    )
    tr = trainer(spec, tmp_path, cache_dir)
    used = []
    real = tr.train_epoch

    def recording():
        used.append(tr.optimizer.param_groups[0]["lr"])
        return real()

    tr.train_epoch = recording
    tr.run()
    logged = history(tmp_path)["lr"]
    assert used[1:] == pytest.approx(logged[:-1])
    # the cosine schedule no longer pulls the rate below swa_lr once SWALR has annealed to it
    assert logged[-2:] == pytest.approx([0.01, 0.01])
