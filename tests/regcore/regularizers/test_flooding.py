"""Flooding |L − b| + b: the training loss floats around b instead of going to zero."""

from __future__ import annotations

import pytest
import torch

from regcore.regularizers.base import Step
from regcore.regularizers.flooding import Flooding, flood
from tests.regcore.runs import make_spec, train, trainer

OVERFIT = {
    "data": {"name": "mnist1d", "n_train": 100, "n_val": 200, "n_test": 200},
    "model": {"name": "mlp", "hidden": [256, 256]},
    "train": {"optimizer": "sgd", "lr": 0.1, "batch_size": 25, "epochs": 150, "device": "cpu"},
}
LEVEL = 0.2


def test_flood_is_the_identity_above_the_level_and_mirrors_the_loss_below_it():
    assert float(flood(torch.tensor(0.5), 0.2)) == pytest.approx(0.5)
    assert float(flood(torch.tensor(0.05), 0.2)) == pytest.approx(0.35)
    assert float(flood(torch.tensor(0.2), 0.2)) == pytest.approx(0.2)


def test_below_the_level_the_gradient_changes_sign():
    above, below = torch.tensor(0.5, requires_grad=True), torch.tensor(0.05, requires_grad=True)
    flood(above, 0.2).backward()
    flood(below, 0.2).backward()
    assert float(above.grad) == 1.0 and float(below.grad) == -1.0


def test_the_loss_hook_floods_the_batch_loss(tmp_path, cache_dir):
    spec = make_spec(regularizers=[{"name": "flooding", "level": 3.0}])
    t = trainer(spec, tmp_path, cache_dir)
    (reg,) = t.regs
    assert isinstance(reg, Flooding)
    x, y = t.data.train.x[:10], t.data.train.y[:10]
    step = Step(t.model, t.optimizer, t._loss_fn, x, y, epoch=0, index=0)
    loss = t._loss_fn(t.model(x), y)  # ~ln 10 ≈ 2.3 at init, below the level 3
    flooded = reg.transform_loss(loss, step)
    assert flooded.item() == pytest.approx(6.0 - loss.item(), rel=1e-6)


def test_the_training_loss_stays_near_the_flood_level_on_an_overfit_run(tmp_path, cache_dir):
    final = {}
    for key, regs in {"none": [], "flooding": [{"name": "flooding", "level": LEVEL}]}.items():
        spec = make_spec(regularizers=regs, **OVERFIT)
        final[key] = train(spec, tmp_path / key, cache_dir).metrics["train_loss"]
    # measured over seeds 0-2: none ~0.011, flooding 0.19-0.24
    assert final["none"] < LEVEL / 5
    assert LEVEL * 0.5 <= final["flooding"] <= LEVEL * 2
