"""Decoupled weight decay: φ ← (1 − lr·λ′)φ on weights; equals l2 (λ = λ′/2) under SGD only."""

from __future__ import annotations

import torch

from regcore.regularizers.base import Step
from regcore.regularizers.weight_decay import WeightDecay, decay_
from tests.regcore.runs import make_spec, trainer

SGD = {"optimizer": "sgd", "lr": 0.1, "batch_size": 50, "epochs": 3, "device": "cpu"}
ADAM = {"optimizer": "adam", "lr": 0.01, "batch_size": 50, "epochs": 3, "device": "cpu"}


def _trained_params(regularizers, train_spec, tmp_path, cache_dir) -> dict[str, torch.Tensor]:
    spec = make_spec(regularizers=regularizers, train=train_spec)
    t = trainer(spec, tmp_path, cache_dir)
    t.run()
    return {n: p.detach().clone() for n, p in t.model.named_parameters()}


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[n] - b[n]).abs().max()) for n in a)


def test_decay_multiplies_each_tensor_by_one_minus_lr_times_rate():
    a, b = torch.tensor([2.0, -4.0]), torch.tensor([[1.0]])
    decay_([a, b], lr=0.1, rate=0.5)
    torch.testing.assert_close(a, torch.tensor([1.9, -3.8]))
    torch.testing.assert_close(b, torch.tensor([[0.95]]))


def test_the_hook_decays_weights_with_the_optimizers_current_lr_and_leaves_biases(
    tmp_path, cache_dir
):
    spec = make_spec(regularizers=[{"name": "weight_decay", "rate": 0.5}], train=SGD)
    t = trainer(spec, tmp_path, cache_dir)
    (reg,) = t.regs
    assert isinstance(reg, WeightDecay)
    for group in t.optimizer.param_groups:
        group["lr"] = 0.2  # as a scheduler would have set it
    before = {n: p.detach().clone() for n, p in t.model.named_parameters()}
    x, y = t.data.train.x[:10], t.data.train.y[:10]
    reg.before_optimizer_step(Step(t.model, t.optimizer, t._loss_fn, x, y, epoch=0, index=0))
    for name, p in t.model.named_parameters():
        factor = 1.0 - 0.2 * 0.5 if name.endswith("weight") else 1.0
        torch.testing.assert_close(p.detach(), before[name] * factor)


def test_with_plain_sgd_decay_equals_l2_at_half_the_rate(tmp_path, cache_dir):
    decayed = _trained_params(
        [{"name": "weight_decay", "rate": 0.02}], SGD, tmp_path / "a", cache_dir
    )
    l2 = _trained_params([{"name": "l2", "strength": 0.01}], SGD, tmp_path / "b", cache_dir)
    plain = _trained_params([], SGD, tmp_path / "c", cache_dir)
    assert _max_diff(decayed, l2) < 1e-6
    assert _max_diff(decayed, plain) > 1e-3  # the decay did something over these 30 steps


def test_with_adam_decoupled_decay_differs_from_l2(tmp_path, cache_dir):
    decayed = _trained_params(
        [{"name": "weight_decay", "rate": 0.2}], ADAM, tmp_path / "a", cache_dir
    )
    l2 = _trained_params([{"name": "l2", "strength": 0.1}], ADAM, tmp_path / "b", cache_dir)
    assert _max_diff(decayed, l2) > 1e-2


def test_with_adam_decoupled_decay_still_shrinks_the_weights(tmp_path, cache_dir):
    norm = {}
    for rate in (0.0, 1.0):
        spec = make_spec(
            regularizers=[{"name": "weight_decay", "rate": rate}], train={**ADAM, "epochs": 10}
        )
        t = trainer(spec, tmp_path / str(rate), cache_dir)
        norm[rate] = t.run().metrics["weight_l2"]
    assert norm[1.0] < 0.75 * norm[0.0]
