"""ema: the update rule, the hook (after every step), the effect (a smoother val curve)."""

from __future__ import annotations

import pytest
import torch

from regcore.regularizers.ema import ema_update
from regcore.training.metrics import evaluate
from tests.regcore.runs import make_spec, trainer


def test_ema_update_weighs_the_old_average_by_decay():
    assert float(ema_update(torch.tensor(10.0), torch.tensor(0.0), 0.9)) == pytest.approx(9.0)


def test_the_average_follows_every_step_with_the_given_decay(tmp_path, cache_dir):
    spec = make_spec(regularizers=[{"name": "ema", "decay": 0.5}])
    tr = trainer(spec, tmp_path, cache_dir)
    ema = tr.regs[0]
    w = [p.detach().clone() for p in tr.model.parameters()]
    sums: dict = {}
    x, y = tr.data.train.x[:50], tr.data.train.y[:50]
    tr.train_step(x, y, sums)  # the first update copies the weights
    first = [p.detach().clone() for p in tr.model.parameters()]
    tr.train_step(x, y, sums)
    for avg, a, b, w0 in zip(
        ema.averaged.module.parameters(), first, tr.model.parameters(), w, strict=True
    ):
        assert torch.allclose(avg, 0.5 * a + 0.5 * b.detach(), atol=1e-6)
        assert not torch.equal(a, w0)
    assert ema.finalize(tr.model) is ema.averaged.module


def _roughness(curve: list[float]) -> float:
    """Σ|v_t − (v_{t−1} + v_{t+1})/2|: wiggle around the local trend."""
    return sum(abs(b - (a + c) / 2) for a, b, c in zip(curve, curve[1:], curve[2:], strict=False))


def test_the_averaged_weights_give_a_smoother_val_curve(tmp_path, cache_dir):
    spec = make_spec(
        data={"name": "mnist1d", "n_train": 500, "n_val": 200, "n_test": 100},
        regularizers=[{"name": "ema", "decay": 0.95}],
        train={"optimizer": "sgd", "lr": 0.3, "batch_size": 10, "epochs": 12, "device": "cpu"},
    )
    tr = trainer(spec, tmp_path, cache_dir)
    raw, avg = [], []
    for _ in range(spec.train.epochs):
        tr.train_epoch()
        tr.epoch += 1
        raw.append(evaluate(tr.model, tr.data)["val_loss"])
        avg.append(evaluate(tr.regs[0].averaged.module, tr.data)["val_loss"])
    assert _roughness(avg) < 0.7 * _roughness(raw)


def test_ema_val_loss_is_the_val_loss_of_the_averaged_model_in_eval_mode(tmp_path, cache_dir):
    spec = make_spec(regularizers=[{"name": "dropout", "p": 0.5}, {"name": "ema", "decay": 0.9}])
    tr = trainer(spec, tmp_path, cache_dir)
    ema = tr.regs[1]
    tr.train_epoch()
    tr.epoch += 1
    metrics = tr.end_epoch({})
    avg = ema.averaged.module
    assert avg.training  # put back in the mode it was in
    avg.eval()
    with torch.no_grad():
        out = avg(tr.data.val.x)
    assert metrics["ema_val_loss"] == pytest.approx(
        float(torch.nn.functional.cross_entropy(out, tr.data.val.y)), rel=1e-6
    )
    assert metrics["ema_val_acc"] == pytest.approx(
        float((out.argmax(1) == tr.data.val.y).float().mean())
    )
    # the average lags the raw weights, so the two differ
    assert metrics["ema_val_loss"] != metrics["val_loss"]
