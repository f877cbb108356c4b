import pytest
import torch

from regcore.regularizers.grad_norm import (
    grad_norm_penalty,
    gradient_descent,
    gradient_flow,
    modified_loss,
)
from tests.regcore.runs import history, make_spec, train, trainer


def toy_loss(p: torch.Tensor) -> torch.Tensor:
    """A non-quadratic two-parameter loss (a curved valley), for Prince's notebook 9.2 toy."""
    return (
        0.5 * torch.sin(p[0]) ** 2
        + 0.25 * (p[1] - torch.cos(p[0])) ** 2
        + 0.1 * p[0] ** 2 * p[1] ** 2
    )


def test_penalty_is_the_coefficient_times_the_squared_gradient_norm():
    phi = torch.tensor([1.0, 2.0], requires_grad=True)
    loss = (phi**2).sum()  # gradient (2, 4), ‖g‖² = 20
    pen = grad_norm_penalty(loss, [phi], 0.25)
    assert float(pen.detach()) == pytest.approx(5.0)
    (g,) = torch.autograd.grad(pen, phi)  # ∂/∂φ of 0.25·4‖φ‖² = 2φ
    assert torch.allclose(g, 2 * phi.detach())


@pytest.mark.parametrize("start", [(0.3, 2.8), (1.5, -1.0)])
def test_flow_on_the_modified_loss_lands_nearer_the_discrete_gd_endpoint(start):
    phi0 = torch.tensor(start, dtype=torch.float64)
    lr, steps = 0.1, 30
    gd = gradient_descent(toy_loss, phi0, lr, steps)
    flow = gradient_flow(toy_loss, phi0, lr * steps, 2.5e-3)
    flow_mod = gradient_flow(modified_loss(toy_loss, lr / 4), phi0, lr * steps, 2.5e-3)
    assert float((flow_mod - gd).norm()) < 0.2 * float((flow - gd).norm())


def test_strength_null_means_lr_over_four_and_the_hook_matches_autograd(tmp_path, cache_dir):
    t = trainer(make_spec(regularizers=[{"name": "grad_norm"}]), tmp_path, cache_dir)
    reg = t.regs[0]
    assert reg.coeff == pytest.approx(0.1 / 4)
    x, y = t.data.train.x[:20], t.data.train.y[:20]

    class S:
        data_loss = torch.nn.functional.cross_entropy(t.model(x), y)

    got = reg.penalty(S())
    grads = torch.autograd.grad(S.data_loss, list(t.model.parameters()), retain_graph=True)
    want = 0.025 * sum(float(g.pow(2).sum()) for g in grads)
    assert float(got.detach()) == pytest.approx(want, rel=1e-5)
    assert "grad_norm_batch" in reg.extra_metrics(t.model)


def test_grad_norm_lowers_the_gradient_norm_along_the_path(tmp_path, cache_dir):
    run = {
        "train": {"optimizer": "sgd", "lr": 0.1, "batch_size": 50, "epochs": 10, "device": "cpu"}
    }
    for seed in (0, 1):
        means = []
        # strength 0 only measures: no penalty, the same training as without grad_norm
        for c in (0.0, 0.5):
            train(
                make_spec(seed=seed, regularizers=[{"name": "grad_norm", "strength": c}], **run),
                tmp_path / f"{seed}{c}",
                cache_dir,
            )
            norms = history(tmp_path / f"{seed}{c}")["grad_norm_batch"]
            means.append(sum(norms) / len(norms))
        assert means[1] < 0.9 * means[0]
