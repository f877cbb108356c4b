"""Elastic net λ₁Σ|w| + λ₂Σw²: the sum of the two penalties; sparsity between L1's and L2's."""

from __future__ import annotations

import pytest
import torch

from regcore.regularizers.base import Step
from regcore.regularizers.elastic_net import ElasticNet, elastic_net_penalty
from regcore.regularizers.l1 import l1_penalty
from regcore.regularizers.l2 import l2_penalty
from tests.regcore.runs import make_spec, train, trainer

TRAIN = {"optimizer": "sgd", "lr": 0.1, "batch_size": 50, "epochs": 40, "device": "cpu"}
STRENGTH = 5e-3


def test_elastic_net_is_lambda1_sum_abs_plus_lambda2_sum_squares():
    a, b = torch.tensor([1.0, -2.0]), torch.tensor([[3.0]])
    value = elastic_net_penalty([a, b], l1=0.5, l2=0.1)
    assert float(value) == pytest.approx(0.5 * (1 + 2 + 3) + 0.1 * (1 + 4 + 9))


def test_elastic_net_reduces_to_l1_or_l2_when_the_other_strength_is_zero():
    gen = torch.Generator().manual_seed(0)
    ws = [torch.randn(4, 3, generator=gen), torch.randn(5, generator=gen)]
    torch.testing.assert_close(elastic_net_penalty(ws, 0.3, 0.0), l1_penalty(ws, 0.3))
    torch.testing.assert_close(elastic_net_penalty(ws, 0.0, 0.3), l2_penalty(ws, 0.3))


def test_the_penalty_hook_covers_weights_only(tmp_path, cache_dir):
    spec = make_spec(
        model={"name": "mlp", "hidden": [8]},
        regularizers=[{"name": "elastic_net", "l1": 0.01, "l2": 0.1}],
    )
    t = trainer(spec, tmp_path, cache_dir)
    (reg,) = t.regs
    assert isinstance(reg, ElasticNet)
    m = t.model
    ws = [m.body[0].weight, m.out.weight]
    expected = sum(0.01 * w.abs().sum() + 0.1 * w.pow(2).sum() for w in ws)
    x, y = t.data.train.x[:10], t.data.train.y[:10]
    value = reg.penalty(Step(m, t.optimizer, t._loss_fn, x, y, epoch=0, index=0))
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    value.backward()
    assert m.body[0].bias.grad is None and m.out.bias.grad is None


def test_elastic_net_sparsity_lies_between_l1s_and_l2s(tmp_path, cache_dir):
    runs = {
        "l1": {"name": "l1", "strength": STRENGTH},
        "l2": {"name": "l2", "strength": STRENGTH},
        "elastic_net": {"name": "elastic_net", "l1": STRENGTH / 2, "l2": STRENGTH / 2},
    }
    sparsity = {}
    for key, reg in runs.items():
        spec = make_spec(regularizers=[reg], train=TRAIN)
        sparsity[key] = train(spec, tmp_path / key, cache_dir).metrics["sparsity"]
    # measured over seeds 0-2: l2 0.007-0.009, elastic net 0.32-0.37, l1 0.71-0.84
    assert sparsity["l2"] + 0.05 < sparsity["elastic_net"] < sparsity["l1"] - 0.1
