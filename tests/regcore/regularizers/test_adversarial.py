"""Adversarial training: FGSM and PGD by hand, the penalty contract, robustness to FGSM."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from regcore.regularizer_specs import AdversarialSpec
from regcore.regularizers.adversarial import Adversarial, fgsm, pgd
from regcore.regularizers.base import Step, TaskInfo
from tests.regcore.measure_helpers import accuracy
from tests.regcore.runs import make_spec, trainer


def _linear() -> nn.Linear:
    lin = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [0.0, 1.0, -1.0]]))
    return lin


def _dot_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Σ out·y: its input gradient is Wᵀy, easy to work out by hand."""
    return (out * y).sum()


def _task() -> TaskInfo:
    return TaskInfo("classification", 3, 4, None, 1, 1, torch.device("cpu"))


def test_fgsm_steps_epsilon_along_the_sign_of_the_input_gradient():
    x = torch.tensor([[0.5, -0.5, 1.0]])
    y = torch.tensor([[1.0, 3.0]])  # ∇ₓ = Wᵀy = [1, 1, -2.5]
    out = fgsm(_linear(), x, y, 0.1, _dot_loss)
    torch.testing.assert_close(out, torch.tensor([[0.6, -0.4, 0.9]]))
    assert not out.requires_grad


def test_fgsm_does_not_clamp_standardized_inputs_to_the_unit_interval():
    x = torch.tensor([[-3.0, 2.0, 5.0]])
    out = fgsm(_linear(), x, torch.tensor([[1.0, 3.0]]), 0.5, _dot_loss)
    torch.testing.assert_close(out, torch.tensor([[-2.5, 2.5, 4.5]]))


def test_pgd_is_projected_onto_the_epsilon_ball():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3))
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    adv = pgd(model, x, y, 0.2, F.cross_entropy, steps=7, step_size=0.1)
    assert (adv - x).abs().max() <= 0.2 + 1e-6
    assert (adv - x).abs().max() > 0.19  # the large steps reach the boundary
    assert F.cross_entropy(model(adv), y) > F.cross_entropy(model(x), y)


def test_pgd_on_a_linear_loss_ends_at_the_fgsm_corner_and_one_full_step_is_fgsm():
    x, y = torch.tensor([[0.5, -0.5, 1.0]]), torch.tensor([[1.0, 3.0]])
    corner = fgsm(_linear(), x, y, 0.1, _dot_loss)
    torch.testing.assert_close(pgd(_linear(), x, y, 0.1, _dot_loss, steps=4), corner)
    torch.testing.assert_close(pgd(_linear(), x, y, 0.1, _dot_loss, steps=1, step_size=0.1), corner)
    # a step shorter than ε stops short of the corner
    short = pgd(_linear(), x, y, 0.1, _dot_loss, steps=1, step_size=0.025)
    torch.testing.assert_close(short, x + 0.025 * torch.tensor([[1.0, 1.0, -1.0]]))


def test_attacks_leave_parameter_gradients_untouched():
    model = _linear()
    x, y = torch.randn(2, 3), torch.randn(2, 2)
    fgsm(model, x, y, 0.1, _dot_loss)
    pgd(model, x, y, 0.1, _dot_loss, steps=3)
    assert model.weight.grad is None


def test_penalty_makes_the_total_loss_alpha_clean_plus_one_minus_alpha_adversarial():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    reg = Adversarial(AdversarialSpec(method="fgsm", epsilon=0.3, alpha=0.25), _task())
    step = Step(model, None, F.cross_entropy, x, y, 0, 0)  # type: ignore[arg-type]
    step.outputs = model(x)
    step.data_loss = F.cross_entropy(step.outputs, y)
    total = step.data_loss + reg.penalty(step)
    assert model[0].weight.grad is None  # computing x′ accumulated nothing
    total.backward()
    got = [p.grad.clone() for p in model.parameters()]

    x_adv = fgsm(model, x, y, 0.3, F.cross_entropy)
    expected_loss = 0.25 * F.cross_entropy(model(x), y) + 0.75 * F.cross_entropy(model(x_adv), y)
    torch.testing.assert_close(total, expected_loss)
    expected = torch.autograd.grad(expected_loss, list(model.parameters()))
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e)


def test_alpha_one_adds_no_term():
    reg = Adversarial(AdversarialSpec(alpha=1.0), _task())
    step = Step(
        nn.Linear(4, 3), None, F.cross_entropy, torch.zeros(1, 4), torch.zeros(1).long(), 0, 0
    )  # type: ignore[arg-type]
    step.data_loss = torch.tensor(1.0)
    assert reg.penalty(step) is None


def _fgsm_accuracy(regs: list[dict], tmp_path, cache_dir, eps: float) -> float:
    spec = make_spec(
        data={"name": "mnist1d", "n_train": 1000, "n_val": 200, "n_test": 500},
        model={"name": "mlp", "hidden": [128]},
        train={"optimizer": "adam", "lr": 0.003, "batch_size": 50, "epochs": 20, "device": "cpu"},
        regularizers=regs,
    )
    tr = trainer(spec, tmp_path / str(len(regs)), cache_dir)
    tr.run()
    tr.model.eval()
    x, y = tr.data.test.x, tr.data.test.y
    return accuracy(tr.model, fgsm(tr.model, x, y, eps, tr._loss_fn), y)


def test_adversarial_training_raises_accuracy_under_an_fgsm_attack(tmp_path, cache_dir):
    plain = _fgsm_accuracy([], tmp_path, cache_dir, eps=0.2)
    robust = _fgsm_accuracy([{"name": "adversarial", "epsilon": 0.2}], tmp_path, cache_dir, eps=0.2)
    # measured over seeds 0-2: 0.09-0.10 without, 0.16-0.18 with
    assert robust > plain + 0.05
