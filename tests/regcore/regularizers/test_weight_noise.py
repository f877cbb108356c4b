"""Weight noise: the perturb/restore pair, the step contract, and flatter minima."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from regcore.regularizer_specs import WeightNoiseSpec
from regcore.regularizers.base import Step, TaskInfo
from regcore.regularizers.weight_noise import WeightNoise, add_weight_noise_, restore_weights_
from tests.regcore.measure_helpers import sharpness
from tests.regcore.runs import make_spec, trainer


def test_noise_is_added_in_place_and_clean_values_are_returned():
    w = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    original = w.clone()
    z = torch.randn(2, 2, generator=torch.Generator().manual_seed(5))
    clean = add_weight_noise_([w], 0.1, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(w, original + 0.1 * z)
    torch.testing.assert_close(clean[0], original)
    restore_weights_([w], clean)
    assert torch.equal(w, original)  # bit-exact, not w + ε − ε


def test_noise_has_standard_deviation_sigma():
    w = torch.zeros(100_000)
    add_weight_noise_([w], 0.05, generator=torch.Generator().manual_seed(0))
    assert abs(w.std().item() - 0.05) < 0.001 and w.mean().abs() < 0.001


def test_gradient_is_taken_at_noisy_weights_and_applied_to_clean_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    task = TaskInfo("classification", 2, 3, None, 1, 1, torch.device("cpu"))
    reg = WeightNoise(WeightNoiseSpec(sigma=0.3), task)
    reg.setup(model, opt)
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    w0, b0 = model[0].weight.detach().clone(), model[0].bias.detach().clone()
    step = Step(model, opt, F.cross_entropy, x, y, 0, 0)

    reg.before_forward(step)
    w_noisy = model[0].weight.detach().clone()
    assert not torch.equal(w_noisy, w0)
    assert torch.equal(model[0].bias, b0)  # biases stay clean
    F.cross_entropy(model(x), y).backward()
    reg.before_optimizer_step(step)
    assert torch.equal(model[0].weight, w0)
    opt.step()

    w_ref = w_noisy.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(F.linear(x, w_ref, b0), y), w_ref)
    torch.testing.assert_close(model[0].weight.detach(), w0 - 0.5 * g)


def test_sigma_zero_leaves_the_weights_untouched():
    model = nn.Linear(3, 2)
    task = TaskInfo("classification", 2, 3, None, 1, 1, torch.device("cpu"))
    reg = WeightNoise(WeightNoiseSpec(sigma=0.0), task)
    reg.setup(model, torch.optim.SGD(model.parameters(), lr=0.1))
    w0 = model.weight.detach().clone()
    step = Step(model, None, None, None, None, 0, 0)  # type: ignore[arg-type]
    reg.before_forward(step)
    assert torch.equal(model.weight, w0)
    reg.before_optimizer_step(step)


def _sharpness_after(epochs: int, sigma: float, tmp_path, cache_dir) -> tuple[float, float]:
    regs = [{"name": "weight_noise", "sigma": sigma}] if sigma else []
    spec = make_spec(
        model={"name": "mlp", "hidden": [64]},
        train={"optimizer": "sgd", "lr": 0.1, "batch_size": 50, "epochs": epochs, "device": "cpu"},
        regularizers=regs,
    )
    tr = trainer(spec, tmp_path / f"{epochs}-{sigma}", cache_dir)
    result = tr.run()
    return sharpness(
        tr.model, tr.data.train.x, tr.data.train.y, tr._loss_fn, iters=20
    ), result.metrics["train_loss"]


def test_weight_noise_finds_flatter_minima_than_plain_sgd(tmp_path, cache_dir):
    noisy, noisy_loss = _sharpness_after(100, 0.1, tmp_path, cache_dir)
    plain, _ = _sharpness_after(100, 0.0, tmp_path, cache_dir)
    assert noisy < 0.9 * plain
    # not merely less training: plain SGD stopped at a similar train loss is sharper still
    plain_early, plain_early_loss = _sharpness_after(60, 0.0, tmp_path, cache_dir)
    assert abs(plain_early_loss - noisy_loss) < 0.1
    assert noisy < 0.9 * plain_early
