"""Input noise: the formula, the hook, and Bishop's equivalence with ridge regression."""

from __future__ import annotations

import pytest
import torch

from regcore.regularizer_specs import InputNoiseSpec
from regcore.regularizers.base import Step, TaskInfo
from regcore.regularizers.input_noise import InputNoise, input_noise
from tests.regcore.runs import make_spec, trainer


def _task() -> TaskInfo:
    return TaskInfo("regression", 1, 3, None, 1, 1, torch.device("cpu"))


def _step(x: torch.Tensor, y: torch.Tensor) -> Step:
    return Step(torch.nn.Identity(), None, None, x, y, 0, 0)  # type: ignore[arg-type]


def test_additive_noise_is_x_plus_sigma_times_a_standard_normal_draw():
    x = torch.tensor([[1.0, -2.0, 0.5]])
    z = torch.randn(1, 3, generator=torch.Generator().manual_seed(7))
    out = input_noise(x, 0.3, "additive", generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(out, x + 0.3 * z)


def test_multiplicative_noise_is_x_times_a_normal_draw_around_one():
    x = torch.tensor([[1.0, -2.0, 0.5]])
    z = torch.randn(1, 3, generator=torch.Generator().manual_seed(7))
    out = input_noise(x, 0.3, "multiplicative", generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(out, x * (1 + 0.3 * z))


def test_noise_has_the_requested_variance_and_zero_sigma_is_the_identity():
    x = torch.full((200_000,), 2.0)
    gen = torch.Generator().manual_seed(0)
    add = input_noise(x, 0.5, "additive", gen) - x
    mul = input_noise(x, 0.5, "multiplicative", gen) / x
    assert add.mean().abs() < 0.01 and abs(add.var().item() - 0.25) < 0.005
    assert (mul.mean() - 1).abs() < 0.01 and abs(mul.var().item() - 0.25) < 0.005
    assert input_noise(x, 0.0) is x


def test_hook_draws_fresh_noise_each_step_and_leaves_targets_alone():
    reg = InputNoise(InputNoiseSpec(sigma=0.1), _task())
    x, y = torch.zeros(4, 3), torch.ones(4, 1)
    x1, y1 = reg.transform_batch(x, y, _step(x, y))
    x2, _ = reg.transform_batch(x, y, _step(x, y))
    assert y1 is y
    assert not torch.equal(x1, x) and not torch.equal(x1, x2)


def _ridge(x: torch.Tensor, y: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """argmin over (w, b) of mean((xw + b − y)²) + Σ_j lam_j w_j²: bias unpenalized."""
    n, d = x.shape
    a = torch.cat([x, torch.ones(n, 1, dtype=x.dtype)], 1)
    reg = torch.diag(torch.cat([lam, torch.zeros(1, dtype=x.dtype)]))
    return torch.linalg.solve(a.T @ a / n + reg, a.T @ y / n)


@pytest.mark.parametrize("mode", ["additive", "multiplicative"])
def test_noisy_least_squares_converges_to_ridge_with_lambda_sigma_squared(mode):
    """Bishop (1995): with the mean loss, E[loss on x + r] = loss + σ²‖w‖²; for x·r the
    strength of w_j is σ²·mean(x_j²). Averaged noisy-gradient descent lands on that ridge."""
    torch.manual_seed(0)
    n, d, sigma = 64, 4, 0.5
    x = torch.randn(n, d, dtype=torch.float64) + 0.3
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [1.5]], dtype=torch.float64) + 0.1 * torch.randn(
        n, 1, dtype=torch.float64
    )
    lam = torch.full((d,), sigma**2, dtype=torch.float64)
    if mode == "multiplicative":
        lam = lam * x.pow(2).mean(0)
    ridge = _ridge(x, y, lam)
    ols = _ridge(x, y, torch.zeros(d, dtype=torch.float64))

    w = torch.zeros(d + 1, 1, dtype=torch.float64, requires_grad=True)
    xs, ys = x.repeat(64, 1), y.repeat(64, 1)  # 64 noise draws per example in each step
    avg = torch.zeros_like(w)
    steps, burn_in = 600, 300
    for t in range(steps):
        xn = input_noise(xs, sigma, mode)
        loss = (xn @ w[:d] + w[d] - ys).pow(2).mean()
        (g,) = torch.autograd.grad(loss, w)
        with torch.no_grad():
            w -= 0.1 * g
            if t >= burn_in:
                avg += w / (steps - burn_in)
    rel = lambda a, b: float((a - b).norm() / b.norm())  # noqa: E731
    assert rel(avg, ridge) < 0.02
    assert rel(ols, ridge) > 0.1  # the test would notice plain least squares


def test_trainer_with_input_noise_fits_toy1d_linear_model_to_the_ridge_solution(
    tmp_path, cache_dir
):
    sigma = 0.5
    spec = make_spec(
        data={"name": "toy1d", "n_train": 4000, "n_val": 50, "n_test": 50},
        model={"name": "linear"},
        train={"optimizer": "sgd", "lr": 0.05, "batch_size": 4000, "epochs": 300, "device": "cpu"},
        regularizers=[{"name": "input_noise", "sigma": sigma}],
    )
    tr = trainer(spec, tmp_path, cache_dir)
    tr.run()
    x, y = tr.data.train.x.double(), tr.data.train.y.double()
    ridge = _ridge(x, y, torch.tensor([sigma**2], dtype=torch.float64))
    ols = _ridge(x, y, torch.zeros(1, dtype=torch.float64))
    lin = tr.model.head()
    w = float(lin.weight.detach().squeeze())
    assert abs(w - float(ridge[0])) / abs(float(ridge[0])) < 0.02
    assert abs(float(ols[0]) - float(ridge[0])) / abs(float(ridge[0])) > 0.1
    assert abs(float(lin.bias.detach()) - float(ridge[1])) < 0.02
