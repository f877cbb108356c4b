"""Activation L1: α Σ|h| over hidden activations (batch mean); more exactly-zero ReLU units."""

from __future__ import annotations

import pytest
import torch

from regcore.regularizers.activation_l1 import ActivationL1, activation_l1
from regcore.regularizers.base import Step
from tests.regcore.runs import history, make_spec, trainer

TRAIN = {"optimizer": "sgd", "lr": 0.1, "batch_size": 50, "epochs": 30, "device": "cpu"}


def _step(t, x, y) -> Step:
    return Step(t.model, t.optimizer, t._loss_fn, x, y, epoch=0, index=0)


def _zero_fraction_on_test(t) -> float:
    acts: list[torch.Tensor] = []
    hooks = [
        s.register_forward_pre_hook(lambda m, a: acts.append(a[0]))
        for s in t.model.slots("hidden", "conv")
    ]
    t.model.eval()
    with torch.no_grad():
        t.model(t.data.test.x)
    for h in hooks:
        h.remove()
    return sum(int((a == 0).sum()) for a in acts) / sum(a.numel() for a in acts)


def test_activation_l1_sums_absolute_activations_and_averages_over_the_batch():
    h1 = torch.tensor([[1.0, -2.0, 0.0], [3.0, 0.0, 0.0]])  # [B=2, units]
    h2 = torch.tensor([[[0.5, 0.5]], [[-1.0, 0.0]]])  # [B=2, channels, length]
    value = activation_l1([h1, h2], 0.1)
    assert float(value) == pytest.approx(0.1 * (6.0 + 2.0) / 2)


def test_the_hook_penalizes_the_hidden_activations_of_the_training_forward_pass(
    tmp_path, cache_dir
):
    spec = make_spec(
        model={"name": "mlp", "hidden": [16, 8]},
        regularizers=[{"name": "activation_l1", "strength": 0.01}],
    )
    t = trainer(spec, tmp_path, cache_dir)
    (reg,) = t.regs
    assert isinstance(reg, ActivationL1)
    m = t.model.train()
    x, y = t.data.train.x[:10], t.data.train.y[:10]
    m(x)
    h1 = torch.relu(m.body[0](x))
    h2 = torch.relu(m.body[3](h1))
    expected = 0.01 * (h1.sum() + h2.sum()) / 10
    value = reg.penalty(_step(t, x, y))
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    value.backward()
    assert m.body[0].weight.grad is not None


def test_only_the_current_training_step_is_held(tmp_path, cache_dir):
    spec = make_spec(regularizers=[{"name": "activation_l1", "strength": 0.01}])
    t = trainer(spec, tmp_path, cache_dir)
    (reg,) = t.regs
    x, y = t.data.train.x[:10], t.data.train.y[:10]
    t.model.eval()
    with torch.no_grad():
        t.model(t.data.test.x)  # an evaluation pass is not caught
    assert reg.acts == {}
    t.model.train()
    t.model(x)
    t.model(x[:5])  # a second forward replaces the first
    assert [h.shape[0] for h in reg.acts.values()] == [5]
    reg.penalty(_step(t, x, y))
    assert reg.acts == {}  # released once consumed
    assert "activation_sparsity_train_batch" in reg.extra_metrics(t.model)


@pytest.mark.parametrize(
    "model, strength",
    [
        ({"name": "mlp", "hidden": [64, 64]}, 1e-2),
        ({"name": "cnn1d", "channels": [8], "hidden": [32]}, 1e-3),
    ],
)
def test_activation_l1_makes_more_hidden_units_exactly_zero_on_test_data(
    tmp_path, cache_dir, model, strength
):
    zeros, logged = {}, {}
    for s in (0.0, strength):
        spec = make_spec(
            model=model, regularizers=[{"name": "activation_l1", "strength": s}], train=TRAIN
        )
        t = trainer(spec, tmp_path / str(s), cache_dir)
        t.run()
        zeros[s] = _zero_fraction_on_test(t)
        logged[s] = history(tmp_path / str(s))["activation_sparsity_train_batch"][-1]
    # measured over seeds 0-2: mlp 0.42-0.45 → 0.63-0.65, cnn1d 0.40-0.55 → 0.59-0.65
    assert zeros[strength] > zeros[0.0] + 0.05
    assert logged[strength] > logged[0.0]
