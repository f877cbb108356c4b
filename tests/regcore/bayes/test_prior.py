"""The Gaussian prior's L2 strength under the mean-loss convention, both of its forms."""

from __future__ import annotations

import pytest
import torch

from regcore.bayes.prior import l2_strength


def test_cross_entropy_form_is_one_over_two_n_prior_var():
    assert l2_strength(0.5, 200) == pytest.approx(1 / (2 * 200 * 0.5))


def test_least_squares_map_equals_ridge_with_the_mean_loss_strength():
    """Bayesian linear regression's posterior mean (closed form, sum of squares) is the ridge
    solution of mean((y − Xw)²) + λ‖w‖² with λ = σ²_noise/(N·σ²_prior): not σ²_noise/σ²_prior."""
    gen = torch.Generator().manual_seed(0)
    n, d, noise_var, prior_var = 40, 5, 0.3, 0.2
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = x @ torch.randn(d, 1, generator=gen, dtype=torch.float64)
    y = y + noise_var**0.5 * torch.randn(n, 1, generator=gen, dtype=torch.float64)
    eye = torch.eye(d, dtype=torch.float64)
    posterior_mean = torch.linalg.solve(x.T @ x / noise_var + eye / prior_var, x.T @ y / noise_var)
    lam = l2_strength(prior_var, n, noise_var)
    # ∇[mean((y − Xw)²) + λ‖w‖²] = 0  ⇔  (XᵀX/N + λI) w = Xᵀy/N
    ridge = torch.linalg.solve(x.T @ x / n + lam * eye, x.T @ y / n)
    assert torch.allclose(posterior_mean, ridge, atol=1e-10)
    wrong = torch.linalg.solve(x.T @ x / n + noise_var / prior_var * eye, x.T @ y / n)
    assert not torch.allclose(posterior_mean, wrong, atol=1e-3)
