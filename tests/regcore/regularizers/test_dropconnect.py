"""DropConnect: a Bernoulli mask on hidden weights, y = (R∘W)x/(1−p); eval uses W."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from regcore.regularizers.dropconnect import (
    DropConnectLinear,
    draw_mask,
    dropconnect_weight,
)
from tests.regcore.runs import history, make_spec, train, trainer

OVERFIT = {
    "data": {"name": "mnist1d", "n_train": 300, "n_val": 300, "n_test": 300},
    "model": {"name": "mlp", "hidden": [256, 256]},
    "train": {"optimizer": "sgd", "lr": 0.1, "batch_size": 50, "epochs": 40, "device": "cpu"},
}


def test_the_masked_weight_is_r_times_w_over_1_minus_p():
    w = torch.tensor([[1.0, -2.0], [3.0, 4.0]])
    r = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # p = 0.5: kept weights doubled, dropped ones zero
    assert torch.equal(dropconnect_weight(w, r, 0.5), torch.tensor([[2.0, 0.0], [0.0, 8.0]]))


def test_a_drawn_mask_is_binary_keeps_about_1_minus_p_and_matches_the_weight():
    torch.manual_seed(0)
    w = torch.randn(500, 400, dtype=torch.float64)
    mask = draw_mask(w, 0.3)
    assert mask.shape == w.shape and mask.dtype == w.dtype and mask.device == w.device
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert mask.mean().item() == pytest.approx(0.7, abs=0.005)


def test_a_training_forward_uses_a_masked_weight_and_preserves_the_mean_output():
    torch.manual_seed(0)
    lin = nn.Linear(6, 3)
    layer = DropConnectLinear(lin, 0.5).train()
    x = torch.randn(4, 6)
    outs = torch.stack([layer(x) for _ in range(6000)])
    assert not torch.equal(outs[0], outs[1])
    assert torch.allclose(outs.mean(0), lin(x), atol=0.08)


def test_the_eval_forward_uses_w_exactly():
    lin = nn.Linear(6, 3)
    layer = DropConnectLinear(lin, 0.5).eval()
    x = torch.randn(4, 6)
    assert torch.equal(layer(x), F.linear(x, lin.weight, lin.bias))


def test_dropconnect_wraps_every_hidden_linear_but_not_the_head(tmp_path, cache_dir):
    spec = make_spec(
        model={"name": "mlp", "hidden": [16, 8]}, regularizers=[{"name": "dropconnect", "p": 0.4}]
    )
    t = trainer(spec, tmp_path, cache_dir)
    model = t.model
    wrapped = [m for m in model.modules() if isinstance(m, DropConnectLinear)]
    assert len(wrapped) == 2
    assert {id(w.linear) for w in wrapped} == {id(m) for m in model.hidden_linears()}
    assert not isinstance(model.head(), DropConnectLinear)
    assert all(w.p == 0.4 for w in wrapped)
    # the real parameters stay where the optimizer and the penalties find them
    assert {id(p) for p in model.parameters()} == {
        id(p) for g in t.optimizer.param_groups for p in g["params"]
    }


def test_dropconnect_wraps_the_linears_inside_residual_blocks(tmp_path, cache_dir):
    spec = make_spec(
        model={"name": "resmlp", "width": 16, "blocks": 2},
        regularizers=[{"name": "dropconnect", "p": 0.2}],
    )
    model = trainer(spec, tmp_path, cache_dir).model
    assert sum(isinstance(m, DropConnectLinear) for m in model.modules()) == 5


def test_the_model_is_deterministic_in_eval_and_noisy_in_training(tmp_path, cache_dir):
    spec = make_spec(regularizers=[{"name": "dropconnect", "p": 0.5}])
    t = trainer(spec, tmp_path, cache_dir)
    x = t.data.val.x
    t.model.eval()
    assert torch.equal(t.model(x), t.model(x))
    t.model.train()
    assert not torch.equal(t.model(x), t.model(x))


def test_a_training_run_keeps_1_minus_p_of_the_weights_and_evaluates_with_w(tmp_path, cache_dir):
    spec = make_spec(regularizers=[{"name": "dropconnect", "p": 0.3}])
    t = trainer(spec, tmp_path, cache_dir)
    assert t.run().status == "succeeded"
    rates = history(tmp_path)["dropconnect_keep_rate"]
    assert len(rates) == 5
    assert all(r == pytest.approx(0.7, abs=0.01) for r in rates)

    # the trained model's eval pass equals the same network computed from the plain W
    model = t.model.eval()
    x = t.data.test.x
    h = x
    for module in model.body:
        if isinstance(module, DropConnectLinear):
            h = F.linear(h, module.linear.weight, module.linear.bias)
        else:
            h = module(h)
    assert torch.equal(model(x), model.out(h))


def test_dropconnect_shrinks_the_generalization_gap_of_an_overfit_mlp(tmp_path, cache_dir):
    plain = train(make_spec(**OVERFIT), tmp_path / "plain", cache_dir).metrics
    spec = make_spec(regularizers=[{"name": "dropconnect", "p": 0.5}], **OVERFIT)
    masked = train(spec, tmp_path / "masked", cache_dir).metrics
    # measured over seeds 0-2: gen_gap 1.06-1.37 -> 0.50-0.68
    assert masked["gen_gap"] < plain["gen_gap"] - 0.3
