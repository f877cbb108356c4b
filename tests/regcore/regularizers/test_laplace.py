"""laplace: the last-layer GGN posterior against autograd's Hessian, the probit logit variance
and Monte Carlo agreement, and the predictive is better calibrated than MAP at about its
accuracy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from regcore.regularizers.laplace import fit_last_layer
from regcore.spec import SpecError
from scripts.bayes_calibration import EFFECT_RUNS
from tests.regcore.runs import make_spec, train


def _problem(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    n, h, k = 30, 4, 3
    phi = torch.randn(n, h, generator=gen, dtype=torch.float64)
    w = torch.randn(k, h, generator=gen, dtype=torch.float64)
    b = torch.randn(k, generator=gen, dtype=torch.float64)
    y = torch.randint(0, k, (n,), generator=gen)
    return phi, w, b, y


def test_the_full_precision_is_the_hessian_of_the_negative_log_posterior():
    """Σ⁻¹ = ∇²_W [Σᵢ CE(W φᵢ + b, yᵢ) + ‖W‖²/(2σ²)] (for softmax CE the GGN is the Hessian)."""
    phi, w, b, y = _problem()
    prior_var = 0.7

    def neg_log_posterior(flat: torch.Tensor) -> torch.Tensor:
        wf = flat.view_as(w)
        ce = F.cross_entropy(phi @ wf.T + b, y, reduction="sum")
        return ce + wf.pow(2).sum() / (2 * prior_var)

    hessian = torch.autograd.functional.hessian(neg_log_posterior, w.reshape(-1))
    post = fit_last_layer(phi, w, b, prior_var, full=True)
    assert torch.allclose(torch.linalg.inv(post.cov), hessian, atol=1e-8)
    diag = fit_last_layer(phi, w, b, prior_var, full=False)
    assert torch.allclose(1.0 / diag.cov.reshape(-1), torch.diagonal(hessian), atol=1e-10)


def test_the_probit_logit_variance_is_phi_sigma_phi_and_probit_is_near_sampling():
    phi, w, b, y = _problem(1)
    post = fit_last_layer(phi, w, b, 0.5, full=True)
    k, h = w.shape
    for n in range(3):
        jac = torch.kron(torch.eye(k, dtype=phi.dtype), phi[n : n + 1])  # [K, K·H]
        want = torch.diagonal(jac @ post.cov @ jac.T)
        assert torch.allclose(post.logit_var(phi[n : n + 1])[0], want, atol=1e-10)
    sampled = torch.stack(list(post.draws(phi, 4000))).softmax(-1).mean(0)
    assert torch.allclose(sampled, post.probit(phi), atol=0.05)  # probit ≈ Monte Carlo


@pytest.mark.parametrize("hessian", ["full", "diag"])
def test_posterior_predictive_is_better_calibrated_than_map(hessian, tmp_path, cache_dir):
    """Small-data MNIST-1D, seed 0: lower test ECE than the MAP model at about its accuracy
    (each logit is scaled by its own variance, so an arg max may change); 3 seeds measured in
    the issue's closing note."""
    run = EFFECT_RUNS["laplace"]
    laplace = {**run["regularizers"][0], "hessian": hessian}
    m = train(make_spec(**{**run, "regularizers": [laplace]}), tmp_path, cache_dir).metrics
    assert m["laplace_ece"] < m["ece"] - 0.1, (m["laplace_ece"], m["ece"])
    assert abs(m["laplace_test_acc"] - m["test_acc"]) <= 0.03
    assert m["laplace_test_loss"] < m["test_loss"]


def test_the_sampling_predictive_runs_and_is_near_probit(tmp_path, cache_dir):
    run = {**EFFECT_RUNS["laplace"], "train": {**EFFECT_RUNS["laplace"]["train"], "epochs": 30}}
    probit = train(make_spec(**run), tmp_path / "p", cache_dir).metrics
    mc = {**run["regularizers"][0], "predictive": "sampling", "samples": 500}
    sampled = train(make_spec(**{**run, "regularizers": [mc]}), tmp_path / "s", cache_dir).metrics
    assert sampled["test_loss"] == probit["test_loss"]  # the same MAP model
    assert sampled["laplace_test_loss"] == pytest.approx(probit["laplace_test_loss"], abs=0.05)


def test_a_full_hessian_over_a_wide_output_layer_is_refused_naming_the_field():
    wide = {"name": "mlp", "hidden": [500]}  # 10 classes x 500: 5,000 output-layer weights
    with pytest.raises(SpecError) as err:
        make_spec(model=wide, regularizers=[{"name": "laplace"}])
    (e,) = err.value.errors
    assert e["field"] == "regularizers[0].hessian" and "5,000" in e["message"]
    make_spec(model=wide, regularizers=[{"name": "laplace", "hessian": "diag"}])
