import pytest
import torch
from torch import nn

from regcore.regularizers.jacobian import jacobian_sq_norm
from tests.regcore.runs import make_spec, trainer

RUN = {"train": {"optimizer": "sgd", "lr": 0.1, "batch_size": 50, "epochs": 15, "device": "cpu"}}


def input_grad_sq(model, x) -> float:
    """mean ‖∂f/∂x‖²_F, row by row with autograd (the reference)."""
    x = x.clone().requires_grad_(True)
    out = model(x)
    rows = [
        torch.autograd.grad(out[:, k].sum(), x, retain_graph=True)[0] for k in range(out.shape[1])
    ]
    return float(torch.stack(rows).pow(2).sum() / x.shape[0])


def test_full_jacobian_of_a_linear_map_is_its_squared_frobenius_norm():
    a = torch.tensor([[1.0, 2.0], [0.0, -1.0], [3.0, 0.5]])
    x = torch.randn(4, 2, requires_grad=True)
    sq = jacobian_sq_norm(x @ a.t(), x, "full")
    assert float(sq) == pytest.approx(1 + 4 + 1 + 9 + 0.25)


def test_random_projections_estimate_the_same_norm_without_bias():
    torch.manual_seed(0)
    a = torch.randn(5, 3, requires_grad=True)
    x = torch.randn(2000, 3, requires_grad=True)
    est = jacobian_sq_norm(x @ a.t(), x, "projection", projections=4)
    assert float(est.detach()) == pytest.approx(float(a.detach().pow(2).sum()), rel=0.05)
    est.backward()  # double backprop: the estimate is differentiable in the weights
    assert torch.allclose(a.grad, 2 * a.detach(), rtol=0.1, atol=0.1)


def test_penalty_hook_is_lambda_times_the_mean_squared_input_jacobian(tmp_path, cache_dir):
    spec = make_spec(regularizers=[{"name": "jacobian", "strength": 0.3, "estimator": "full"}])
    t = trainer(spec, tmp_path, cache_dir)

    class S:
        model = t.model
        x = t.data.train.x[:16]

    got = t.regs[0].penalty(S())
    assert float(got.detach()) == pytest.approx(0.3 * input_grad_sq(t.model, S.x), rel=1e-5)
    grads = torch.autograd.grad(got, [p for p in t.model.parameters()], allow_unused=True)
    assert any(g is not None and float(g.abs().sum()) > 0 for g in grads)
    assert isinstance(t.model.out, nn.Linear)


def test_jacobian_lowers_the_input_gradient_norm_on_test_points(tmp_path, cache_dir):
    for seed in (0, 1):
        norms = []
        for regs in ([], [{"name": "jacobian", "strength": 0.1}]):
            t = trainer(
                make_spec(seed=seed, regularizers=regs, **RUN),
                tmp_path / f"{seed}{len(regs)}",
                cache_dir,
            )
            t.run()
            t.model.eval()
            norms.append(input_grad_sq(t.model, t.data.test.x))
        assert norms[1] < 0.7 * norms[0]
