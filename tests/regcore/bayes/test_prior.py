"""The Gaussian prior's L2 strength under the mean-loss convention, both of its forms, and the
training step under the prior (sgld's burn-in, laplace's MAP) as l2's step at that strength."""

from __future__ import annotations

import pytest
import torch

from regcore.bayes.prior import l2_strength
from tests.regcore.bayes.common import first_batch, params
from tests.regcore.runs import make_spec, trainer

N = 500  # make_spec's n_train


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


@pytest.mark.parametrize("name", ["sgld", "laplace"])
def test_a_step_under_the_prior_is_the_l2_step_at_its_strength(name, tmp_path, cache_dir):
    own = {"name": name, "prior_var": 0.05, **({"burn_in": 3} if name == "sgld" else {})}
    a = trainer(make_spec(regularizers=[own]), tmp_path / "a", cache_dir)
    l2 = {"name": "l2", "strength": l2_strength(0.05, N)}
    b = trainer(make_spec(regularizers=[l2]), tmp_path / "b", cache_dir)
    for p, q in zip(params(a), params(b), strict=True):
        assert torch.equal(p, q)  # the same seed builds the same model
    for tr in (a, b):
        tr.train_step(*first_batch(tr), {})
    for p, q in zip(params(a), params(b), strict=True):
        assert torch.allclose(p, q, atol=1e-6)
    assert a.regs[0].prior.strength == pytest.approx(1 / (2 * N * 0.05))
