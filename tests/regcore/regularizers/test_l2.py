"""L2 penalty: λΣw² on weights only, per-layer strengths; weight_l2 and gen_gap fall."""

from __future__ import annotations

import pytest
import torch

from regcore.regularizers.base import Step
from regcore.regularizers.l2 import L2Penalty, l2_penalty
from tests.regcore.runs import make_spec, train, trainer

OVERFIT = {
    "data": {"name": "mnist1d", "n_train": 100, "n_val": 200, "n_test": 200},
    "model": {"name": "mlp", "hidden": [256, 256]},
    "train": {"optimizer": "sgd", "lr": 0.1, "batch_size": 25, "epochs": 150, "device": "cpu"},
}


def _step(t) -> Step:
    x, y = t.data.train.x[:10], t.data.train.y[:10]
    return Step(t.model, t.optimizer, t._loss_fn, x, y, epoch=0, index=0)


def test_l2_penalty_is_lambda_times_the_sum_of_squares():
    a, b = torch.tensor([1.0, -2.0]), torch.tensor([[3.0]])
    assert float(l2_penalty([a, b], 0.5)) == pytest.approx(0.5 * (1 + 4 + 9))


def test_l2_penalty_takes_one_strength_per_tensor():
    a, b = torch.tensor([1.0, -2.0]), torch.tensor([3.0])
    assert float(l2_penalty([a, b], [0.1, 1.0])) == pytest.approx(0.1 * 5 + 1.0 * 9)


def test_l2_penalty_of_no_tensors_is_zero():
    assert float(l2_penalty([], 1.0)) == 0.0


def test_the_penalty_hook_sums_squared_weights_and_leaves_biases_out(tmp_path, cache_dir):
    spec = make_spec(
        model={"name": "mlp", "hidden": [8]}, regularizers=[{"name": "l2", "strength": 0.01}]
    )
    t = trainer(spec, tmp_path, cache_dir)
    (reg,) = t.regs
    assert isinstance(reg, L2Penalty)
    m = t.model
    expected = 0.01 * (m.body[0].weight.pow(2).sum() + m.out.weight.pow(2).sum())
    value = reg.penalty(_step(t))
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    value.backward()
    assert m.body[0].bias.grad is None and m.out.bias.grad is None
    torch.testing.assert_close(m.out.weight.grad, 0.02 * m.out.weight.detach())


def test_exclude_empty_penalizes_biases_too(tmp_path, cache_dir):
    spec = make_spec(
        model={"name": "mlp", "hidden": [8]},
        regularizers=[{"name": "l2", "strength": 0.01, "exclude": []}],
    )
    t = trainer(spec, tmp_path, cache_dir)
    expected = 0.01 * sum(float(p.detach().pow(2).sum()) for p in t.model.parameters())
    assert t.regs[0].penalty(_step(t)).item() == pytest.approx(expected, rel=1e-6)


def test_per_layer_strengths_apply_by_longest_name_prefix(tmp_path, cache_dir):
    spec = make_spec(
        model={"name": "mlp", "hidden": [8, 8]},
        regularizers=[{"name": "l2", "strength": 0.01, "per_layer": {"body": 0.5, "body.3": 2.0}}],
    )
    t = trainer(spec, tmp_path, cache_dir)
    m = t.model
    first, second = m.body[0].weight, m.body[3].weight  # Linear, ReLU, Slot, Linear, ...
    assert isinstance(m.body[3], torch.nn.Linear)
    expected = (
        0.5 * first.pow(2).sum() + 2.0 * second.pow(2).sum() + 0.01 * m.out.weight.pow(2).sum()
    )
    assert t.regs[0].penalty(_step(t)).item() == pytest.approx(expected.item(), rel=1e-6)


def test_weight_l2_falls_monotonically_as_the_strength_rises(tmp_path, cache_dir):
    norms = []
    for i, strength in enumerate([0.0, 1e-3, 1e-2]):
        spec = make_spec(
            regularizers=[{"name": "l2", "strength": strength}],
            train={"optimizer": "sgd", "lr": 0.1, "batch_size": 50, "epochs": 30, "device": "cpu"},
        )
        norms.append(train(spec, tmp_path / str(i), cache_dir).metrics["weight_l2"])
    assert norms[0] > norms[1] > norms[2]
    assert norms[2] < 0.8 * norms[0]


def test_l2_shrinks_the_generalization_gap_of_an_overfit_mlp(tmp_path, cache_dir):
    gaps = {}
    for strength in (0.0, 3e-3):
        spec = make_spec(regularizers=[{"name": "l2", "strength": strength}], **OVERFIT)
        result = train(spec, tmp_path / str(strength), cache_dir)
        gaps[strength] = result.metrics["gen_gap"]
    assert gaps[0.0] > 2.0  # the baseline really overfits
    assert gaps[3e-3] < 0.85 * gaps[0.0]
