"""Gaussian dropout: x·N(1, p/(1−p)) in training, the identity at eval."""

from __future__ import annotations

import math

import pytest
import torch

from regcore.regularizers.gaussian_dropout import (
    GaussianDropout,
    GaussianDropoutLayer,
    gaussian_dropout,
    gaussian_dropout_sigma,
)
from tests.regcore.runs import make_spec, train, trainer

OVERFIT = {
    "data": {"name": "mnist1d", "n_train": 300, "n_val": 300, "n_test": 300},
    "model": {"name": "mlp", "hidden": [256, 256]},
    "train": {"optimizer": "sgd", "lr": 0.1, "batch_size": 50, "epochs": 40, "device": "cpu"},
}


def test_sigma_is_the_standard_deviation_of_an_inverted_bernoulli_mask():
    assert gaussian_dropout_sigma(0.5) == 1.0
    assert gaussian_dropout_sigma(0.2) == pytest.approx(math.sqrt(0.25))
    assert gaussian_dropout_sigma(0.0) == 0.0


def test_the_function_multiplies_by_one_plus_sigma_times_the_noise():
    x = torch.tensor([[1.0, -2.0], [0.5, 4.0]])
    noise = torch.tensor([[0.0, 1.0], [-1.0, 0.5]])
    # p = 0.2: σ = 0.5, factors 1, 1.5, 0.5, 1.25
    expected = torch.tensor([[1.0, -3.0], [0.25, 5.0]])
    assert torch.allclose(gaussian_dropout(x, 0.2, noise), expected)


def test_the_layer_preserves_the_mean_and_has_variance_p_over_1_minus_p():
    torch.manual_seed(0)
    layer = GaussianDropoutLayer(0.5).train()
    x = torch.full((400_000,), 2.0)
    out = layer(x)
    assert out.mean().item() == pytest.approx(2.0, abs=0.01)
    # Var(x·r) = x²·σ² = 4·1
    assert out.var().item() == pytest.approx(4.0, rel=0.02)


def test_the_layer_is_the_identity_at_eval_and_when_p_is_zero():
    x = torch.randn(6, 5)
    assert torch.equal(GaussianDropoutLayer(0.5).eval()(x), x)
    assert torch.equal(GaussianDropoutLayer(0.0).train()(x), x)


def test_the_regularizer_puts_gaussian_noise_in_every_hidden_slot(tmp_path, cache_dir):
    spec = make_spec(
        model={"name": "mlp", "hidden": [16, 8]},
        regularizers=[{"name": "gaussian_dropout", "p": 0.3}],
    )
    t = trainer(spec, tmp_path, cache_dir)
    assert isinstance(t.regs[0], GaussianDropout)
    slots = t.model.slots("hidden")
    assert len(slots) == 2
    assert all([type(op) for op in s.ops] == [GaussianDropoutLayer] for s in slots)
    assert all(s.ops[0].p == 0.3 for s in slots)
    assert all(len(s.ops) == 0 for s in t.model.slots("input"))


def test_eval_is_deterministic_and_training_passes_are_noisy(tmp_path, cache_dir):
    spec = make_spec(regularizers=[{"name": "gaussian_dropout", "p": 0.5}])
    t = trainer(spec, tmp_path, cache_dir)
    x = t.data.val.x
    t.model.eval()
    assert torch.equal(t.model(x), t.model(x))
    t.model.train()
    assert not torch.equal(t.model(x), t.model(x))


def test_the_mean_training_output_of_a_noisy_slot_equals_its_input(tmp_path, cache_dir):
    spec = make_spec(regularizers=[{"name": "gaussian_dropout", "p": 0.5}])
    slot = trainer(spec, tmp_path, cache_dir).model.train().slots("hidden")[0]
    torch.manual_seed(3)
    h = torch.randn(8, 16)
    mean = torch.stack([slot(h) for _ in range(4000)]).mean(0)
    assert torch.allclose(mean, h, atol=0.1 * h.abs().max().item())


def test_gaussian_dropout_shrinks_the_generalization_gap_of_an_overfit_mlp(tmp_path, cache_dir):
    plain = train(make_spec(**OVERFIT), tmp_path / "plain", cache_dir).metrics
    spec = make_spec(regularizers=[{"name": "gaussian_dropout", "p": 0.5}], **OVERFIT)
    noisy = train(spec, tmp_path / "noisy", cache_dir).metrics
    # measured over seeds 0-2: gen_gap 1.06-1.37 -> 0.62-0.79
    assert noisy["gen_gap"] < plain["gen_gap"] - 0.2
