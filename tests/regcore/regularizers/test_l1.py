"""L1 penalty λΣ|w| and its proximal step: more near-zero weights than L2; exact zeros."""

from __future__ import annotations

import pytest
import torch

from regcore.regularizers.base import Step
from regcore.regularizers.l1 import L1Penalty, l1_penalty, soft_threshold
from tests.regcore.runs import make_spec, train, trainer

TRAIN = {"optimizer": "sgd", "lr": 0.1, "batch_size": 50, "epochs": 40, "device": "cpu"}
STRENGTH = 5e-3


def _step(t) -> Step:
    x, y = t.data.train.x[:10], t.data.train.y[:10]
    return Step(t.model, t.optimizer, t._loss_fn, x, y, epoch=0, index=0)


def _exact_zero_fraction(model) -> float:
    ws = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)


def test_l1_penalty_is_lambda_times_the_sum_of_absolute_values():
    a, b = torch.tensor([1.0, -2.0]), torch.tensor([[3.0]])
    assert float(l1_penalty([a, b], 0.5)) == pytest.approx(0.5 * (1 + 2 + 3))


def test_soft_threshold_shrinks_toward_zero_and_zeroes_what_is_within_the_threshold():
    w = torch.tensor([-1.5, -0.2, 0.0, 0.3, 0.5, 2.0])
    out = soft_threshold(w, 0.5)
    torch.testing.assert_close(out, torch.tensor([-1.0, 0.0, 0.0, 0.0, 0.0, 1.5]))
    assert int((out == 0).sum()) == 4  # exact zeros, not merely small


def test_the_penalty_hook_sums_absolute_weights_and_leaves_biases_out(tmp_path, cache_dir):
    spec = make_spec(
        model={"name": "mlp", "hidden": [8]}, regularizers=[{"name": "l1", "strength": 0.01}]
    )
    t = trainer(spec, tmp_path, cache_dir)
    (reg,) = t.regs
    assert isinstance(reg, L1Penalty)
    m = t.model
    expected = 0.01 * (m.body[0].weight.abs().sum() + m.out.weight.abs().sum())
    value = reg.penalty(_step(t))
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    value.backward()
    assert m.body[0].bias.grad is None
    torch.testing.assert_close(m.out.weight.grad, 0.01 * m.out.weight.detach().sign())
    before = [p.detach().clone() for p in m.parameters()]
    reg.after_optimizer_step(_step(t))  # without proximal, the step is left alone
    assert all(torch.equal(a, p) for a, p in zip(before, m.parameters(), strict=True))


def test_proximal_mode_adds_no_penalty_and_soft_thresholds_weights_by_lr_times_lambda(
    tmp_path, cache_dir
):
    spec = make_spec(
        model={"name": "mlp", "hidden": [8]},
        regularizers=[{"name": "l1", "strength": 0.5, "proximal": True}],
    )
    t = trainer(spec, tmp_path, cache_dir)
    (reg,) = t.regs
    assert reg.penalty(_step(t)) is None
    for group in t.optimizer.param_groups:
        group["lr"] = 0.2  # the threshold must follow the current lr: 0.2 · 0.5 = 0.1
    before = {n: p.detach().clone() for n, p in t.model.named_parameters()}
    reg.after_optimizer_step(_step(t))
    for name, p in t.model.named_parameters():
        want = soft_threshold(before[name], 0.1) if name.endswith("weight") else before[name]
        torch.testing.assert_close(p.detach(), want)
    assert _exact_zero_fraction(t.model) > 0.5  # init weights are mostly within ±0.1 here


def test_l1_leaves_far_more_near_zero_weights_than_l2_at_the_same_strength(tmp_path, cache_dir):
    sparsity = {}
    for name in ("l1", "l2"):
        spec = make_spec(regularizers=[{"name": name, "strength": STRENGTH}], train=TRAIN)
        sparsity[name] = train(spec, tmp_path / name, cache_dir).metrics["sparsity"]
    assert sparsity["l1"] > 0.5  # measured 0.71-0.84 over seeds 0-2
    assert sparsity["l2"] < 0.05  # measured 0.007-0.009
    assert sparsity["l1"] > 10 * sparsity["l2"]


def test_only_the_proximal_step_gives_exact_zeros(tmp_path, cache_dir):
    zeros = {}
    for proximal in (False, True):
        spec = make_spec(
            regularizers=[{"name": "l1", "strength": STRENGTH, "proximal": proximal}], train=TRAIN
        )
        t = trainer(spec, tmp_path / str(proximal), cache_dir)
        result = t.run()
        zeros[proximal] = _exact_zero_fraction(t.model)
        assert result.metrics["sparsity"] > 0.4
    assert zeros[False] < 0.01
    assert zeros[True] > 0.4  # measured 0.63-0.78 over seeds 0-2
