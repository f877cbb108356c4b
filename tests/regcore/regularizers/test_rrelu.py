"""rrelu: the function, the replaced activations, deterministic eval."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from regcore.regularizers.rrelu import eval_slope, rrelu
from tests.regcore.runs import make_spec, train, trainer


def test_rrelu_keeps_positives_and_scales_negatives_by_the_slope():
    x = torch.tensor([-2.0, -1.0, 0.0, 3.0])
    assert torch.equal(rrelu(x, torch.tensor(0.25)), torch.tensor([-0.5, -0.25, 0.0, 3.0]))


def test_torch_rrelu_draws_slopes_in_range_in_training_and_uses_the_mean_at_eval():
    torch.manual_seed(0)
    layer = nn.RReLU(0.1, 0.3)
    x = -torch.ones(10000)
    slopes = -layer.train()(x)
    assert slopes.min() >= 0.1 and slopes.max() <= 0.3 and slopes.std() > 0.05
    assert torch.allclose(layer.eval()(x), rrelu(x, torch.tensor(eval_slope(0.1, 0.3))))


def test_every_activation_of_the_mlp_is_replaced(tmp_path, cache_dir):
    spec = make_spec(
        model={"name": "mlp", "hidden": [16, 16]}, regularizers=[{"name": "rrelu", "lower": 0.1}]
    )
    model = trainer(spec, tmp_path, cache_dir).model
    acts = [m for m in model.modules() if isinstance(m, nn.RReLU)]
    assert len(acts) == 2 and not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert acts[0].lower == pytest.approx(0.1)


def test_eval_is_deterministic_and_training_is_not(tmp_path, cache_dir):
    spec = make_spec(model={"name": "mlp", "hidden": [32]}, regularizers=[{"name": "rrelu"}])
    tr = trainer(spec, tmp_path, cache_dir)
    x = tr.data.test.x[:64]
    tr.model.eval()
    assert torch.equal(tr.model(x), tr.model(x))
    tr.model.train()
    assert not torch.equal(tr.model(x), tr.model(x))


def test_a_run_with_rrelu_learns(tmp_path, cache_dir):
    result = train(make_spec(regularizers=[{"name": "rrelu"}]), tmp_path, cache_dir)
    assert result.status == "succeeded" and result.metrics["test_acc"] > 0.2
