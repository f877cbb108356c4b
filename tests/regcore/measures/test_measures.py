"""The per-epoch measurements: each against a hand computation, and measuring changes nothing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from regcore.data import Split
from regcore.measures import Measures
from regcore.measures.activation_sparsity import activation_sparsity
from regcore.measures.batch_grad_variance import (
    batch_grad_variance,
    batch_index,
    gradient_variance,
)
from regcore.measures.effective_l2 import effective_l2
from regcore.measures.grad_norm import grad_norm
from regcore.measures.lipschitz_bound import lipschitz_bound, spectral_norm
from regcore.measures.sharpness import power_iteration, sharpness
from regcore.models.mlp import MLP, LinearModel
from regcore.spec import SpecError, parse_spec
from tests.regcore.runs import history, make_spec, train, trainer

ALL = [
    "lipschitz_bound",
    "grad_norm",
    "batch_grad_variance",
    "sharpness",
    "activation_sparsity",
    "confidence",
    "effective_l2",
    "fgsm_acc",
    "pgd_acc",
]


def test_lipschitz_bound_is_the_product_of_the_layers_spectral_norms():
    model = MLP(2, 1, [2], "relu", False)
    with torch.no_grad():
        model.body[0].weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 1.0]]))  # σ = 3
        model.out.weight.copy_(torch.tensor([[3.0, 4.0]]))  # σ = 5
    assert lipschitz_bound(model) == pytest.approx(15.0)


def test_conv_kernels_are_reshaped_to_out_by_in_times_k():
    w = torch.zeros(2, 1, 3)
    w[0, 0] = torch.tensor([1.0, 2.0, 2.0])  # row norm 3, orthogonal to row 1
    w[1, 0] = torch.tensor([0.0, 1.0, -1.0])
    assert float(spectral_norm(w)) == pytest.approx(3.0)


def _linear_problem():
    torch.manual_seed(0)
    x = torch.randn(40, 3)
    y = (x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(40)).reshape(-1, 1)
    model = LinearModel(3, 1)
    return model, Split(x, y)


def test_grad_norm_is_the_norm_of_the_full_batch_gradient():
    model, split = _linear_problem()
    loss = nn.functional.mse_loss(model(split.x), split.y)
    expected = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, model.parameters())])
    assert grad_norm(model, split, "regression") == pytest.approx(float(expected.norm()), rel=1e-5)


def test_gradient_variance_is_the_mean_squared_deviation_from_the_full_gradient():
    batch = torch.tensor([[1.0, 0.0], [3.0, 2.0]])
    full = torch.tensor([2.0, 1.0])
    assert float(gradient_variance(batch, full)) == pytest.approx(2.0)  # (1+1 + 1+1)/2


def test_batch_grad_variance_matches_a_direct_computation():
    model, split = _linear_problem()

    def grad(x, y):
        loss = nn.functional.mse_loss(model(x), y)
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, model.parameters())])

    full = grad(split.x, split.y)  # the 4 batches cover all 40 rows: their union's gradient
    rows = batch_index(40, 10)
    assert sorted(rows.reshape(-1).tolist()) == list(range(40))
    batches = [grad(split.x[r], split.y[r]) for r in rows]
    expected = sum(float((g - full).pow(2).sum()) for g in batches) / 4
    assert batch_grad_variance(model, split, "regression", 10) == pytest.approx(expected, rel=1e-5)


def test_power_iteration_finds_the_top_eigenvalue():
    h = torch.diag(torch.tensor([5.0, 2.0, 1.0]))
    assert float(power_iteration(lambda v: h @ v, torch.ones(3), 50)) == pytest.approx(
        5.0, rel=1e-4
    )


def test_sharpness_of_least_squares_is_the_top_eigenvalue_of_2XtX_over_n():
    model, split = _linear_problem()
    xb = torch.cat([split.x, torch.ones(40, 1)], dim=1)
    top = float(torch.linalg.eigvalsh(2 * xb.T @ xb / 40)[-1])
    assert sharpness(model, split, "regression", iterations=100) == pytest.approx(top, rel=1e-3)


def test_activation_sparsity_counts_exact_zeros_at_the_hidden_slots():
    model = MLP(2, 1, [4], "relu", False)
    with torch.no_grad():
        model.body[0].weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]))
        model.body[0].bias.zero_()
    x = torch.tensor([[1.0, 1.0], [2.0, -1.0]])  # per example: 2 of 4 units are zero
    assert activation_sparsity(model, Split(x, torch.zeros(2))) == pytest.approx(0.5)


def test_effective_l2_is_one_over_twice_the_sum_of_rates():
    assert effective_l2(200 * 0.05) == pytest.approx(0.05)  # 1/(2τα), l2.strength units


def test_an_unknown_measurement_is_a_spec_error():
    with pytest.raises(SpecError, match="measure"):
        parse_spec({"data": {"name": "mnist1d"}, "model": {"name": "mlp"}, "measure": ["nope"]})


def test_measuring_does_not_change_training(tmp_path, cache_dir):
    """Dropout draws from the global RNG every step: any draw by a measurement would show."""
    base = dict(
        regularizers=[{"name": "dropout", "p": 0.3}],
        train={"optimizer": "sgd", "lr": 0.1, "batch_size": 50, "epochs": 3, "device": "cpu"},
    )
    plain = train(make_spec(**base), tmp_path / "a", cache_dir)
    measured = train(make_spec(**base, measure=ALL), tmp_path / "b", cache_dir)
    a, b = history(tmp_path / "a"), history(tmp_path / "b")
    for key in ("train_loss", "val_loss", "test_loss", "train_batch_loss", "weight_l2"):
        assert a[key] == b[key]
    assert plain.metrics == {k: v for k, v in measured.metrics.items() if k != "effective_l2"}
    # a run measurement also goes into summary.json: 3 epochs x 10 steps at 0.1, 1/(2·3.0)
    assert measured.metrics["effective_l2"] == pytest.approx(1 / 6)
    for name in ALL:
        if name != "confidence":
            assert len(b[name]) == 3 and name not in a
    assert measured.timings["measure_s"] > 0 and "measure_s" not in plain.timings


def test_measuring_leaves_no_gradients_and_keeps_the_mode(tmp_path, cache_dir):
    tr = trainer(make_spec(measure=ALL), tmp_path, cache_dir)
    tr.model.train()
    out = Measures(ALL).compute(tr)
    assert set(out) == set(ALL) - {"confidence"}
    assert all(p.grad is None for p in tr.model.parameters())
    assert tr.model.training
