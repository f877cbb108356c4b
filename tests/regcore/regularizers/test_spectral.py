import pytest
import torch

from regcore.regularizers.spectral import (
    power_iteration,
    project_weight,
    sigma_max,
    spectral_penalty,
)
from tests.regcore.runs import make_spec, trainer

RUN = {
    "model": {"name": "mlp", "hidden": [64, 64]},
    "train": {"optimizer": "sgd", "lr": 0.1, "batch_size": 50, "epochs": 10, "device": "cpu"},
}


def lipschitz_bound(model) -> float:
    out = 1.0
    for p in model.parameters():
        if p.dim() == 2:
            out *= float(torch.linalg.matrix_norm(p.detach(), ord=2))
    return out


def test_power_iteration_finds_the_largest_singular_value():
    w = torch.diag(torch.tensor([3.0, 1.0, 0.5]))
    u, v = power_iteration(w, torch.ones(3) / 3**0.5, torch.ones(3) / 3**0.5, 50)
    assert float(sigma_max(w, u, v)) == pytest.approx(3.0, rel=1e-6)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(7, 5, generator=g)
    u, v = power_iteration(a, torch.randn(7, generator=g), torch.randn(5, generator=g), 200)
    assert float(sigma_max(a, u, v)) == pytest.approx(
        float(torch.linalg.matrix_norm(a, ord=2)), rel=1e-5
    )


def test_penalty_is_half_lambda_sum_of_squared_sigmas_and_projection_caps_sigma():
    assert float(spectral_penalty([torch.tensor(3.0), torch.tensor(4.0)], 0.1)) == pytest.approx(
        1.25
    )
    w = torch.diag(torch.tensor([4.0, 1.0]))
    assert torch.allclose(
        project_weight(w, torch.tensor(4.0), 2.0), torch.diag(torch.tensor([2.0, 0.5]))
    )
    assert torch.equal(project_weight(w, torch.tensor(4.0), 5.0), w)


def test_penalty_hook_uses_the_spectral_norms_of_every_weight_matrix(tmp_path, cache_dir):
    spec = make_spec(
        regularizers=[{"name": "spectral", "strength": 0.2, "power_iterations": 30}], **RUN
    )
    t = trainer(spec, tmp_path, cache_dir)
    reg = t.regs[0]
    assert len(reg.params) == 3  # two hidden layers and the head; biases excluded
    expected = (
        0.5 * 0.2 * sum(float(torch.linalg.matrix_norm(p.detach(), ord=2)) ** 2 for p in reg.params)
    )
    assert float(reg.penalty(None).detach()) == pytest.approx(expected, rel=1e-4)
    grads = torch.autograd.grad(reg.penalty(None), reg.params)
    assert all(float(g.abs().sum()) > 0 for g in grads)


def test_project_mode_keeps_every_sigma_at_most_c(tmp_path, cache_dir):
    spec = make_spec(
        regularizers=[{"name": "spectral", "mode": "project", "c": 1.0, "power_iterations": 5}],
        **RUN,
    )
    t = trainer(spec, tmp_path, cache_dir)
    assert t.regs[0].penalty(None) is None
    t.run()
    for p in t.regs[0].params:
        assert float(torch.linalg.matrix_norm(p.detach(), ord=2)) <= 1.0 + 1e-3


def test_lipschitz_bound_falls_as_the_spectral_strength_rises(tmp_path, cache_dir):
    for seed in (0, 1):
        bounds = []
        for lam in (0.0, 1e-3, 1e-2):
            regs = [{"name": "spectral", "strength": lam}] if lam else []
            t = trainer(
                make_spec(seed=seed, regularizers=regs, **RUN),
                tmp_path / f"{seed}-{lam}",
                cache_dir,
            )
            t.run()
            bounds.append(lipschitz_bound(t.model))
        assert bounds[0] > bounds[1] > bounds[2]
        assert bounds[2] < 0.95 * bounds[0]
