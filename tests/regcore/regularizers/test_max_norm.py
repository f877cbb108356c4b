"""Max-norm: every unit's incoming weight vector projected to ‖w‖ ≤ c after each step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from regcore.regularizers.base import Step
from regcore.regularizers.max_norm import MaxNorm, max_norm
from tests.regcore.runs import make_spec, trainer

TOL = 1e-6  # float32 rounding of a norm computed after the projection


def _row_norms(model) -> list[torch.Tensor]:
    return [
        m.weight.detach().flatten(1).norm(dim=1)
        for m in model.modules()
        if isinstance(m, nn.Linear | nn.Conv1d)
    ]


def test_max_norm_scales_rows_above_c_onto_the_ball_and_leaves_the_others():
    w = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
    torch.testing.assert_close(max_norm(w, 1.0), torch.tensor([[0.6, 0.8], [0.3, 0.4]]))


def test_max_norm_treats_a_conv_kernel_per_output_channel():
    w = torch.tensor([[[3.0, 0.0]], [[0.0, 0.0]]]).expand(2, 2, 2).clone()  # [out, in, k]
    w[0] = torch.tensor([[3.0, 0.0], [0.0, 4.0]])  # channel 0 has norm 5 over in × k
    out = max_norm(w, 2.5)
    torch.testing.assert_close(out[0], w[0] / 2)
    torch.testing.assert_close(out[1], w[1])


def test_the_hook_projects_every_linear_row_and_conv_channel_and_leaves_biases(tmp_path, cache_dir):
    spec = make_spec(
        model={"name": "cnn1d", "channels": [4], "hidden": [8]},
        regularizers=[{"name": "max_norm", "c": 0.5}],
    )
    t = trainer(spec, tmp_path, cache_dir)
    (reg,) = t.regs
    assert isinstance(reg, MaxNorm)
    with torch.no_grad():
        for p in t.model.parameters():
            p.mul_(10)
    biases = {n: p.detach().clone() for n, p in t.model.named_parameters() if "bias" in n}
    x, y = t.data.train.x[:10], t.data.train.y[:10]
    reg.after_optimizer_step(Step(t.model, t.optimizer, t._loss_fn, x, y, epoch=0, index=0))
    norms = _row_norms(t.model)
    assert len(norms) == 3  # conv, hidden linear, head
    for n in norms:
        assert float(n.max()) <= 0.5 + TOL
        assert float(n.min()) == pytest.approx(0.5, abs=1e-5)  # ×10 put every row outside
    for name, p in t.model.named_parameters():
        if name in biases:
            assert torch.equal(p.detach(), biases[name])


def test_after_training_with_a_large_lr_no_row_norm_exceeds_c(tmp_path, cache_dir):
    train_spec = {"optimizer": "sgd", "lr": 0.5, "batch_size": 50, "epochs": 10, "device": "cpu"}
    largest = {}
    for c in (None, 1.0):
        regs = [{"name": "max_norm", "c": c}] if c else []
        t = trainer(make_spec(regularizers=regs, train=train_spec), tmp_path / str(c), cache_dir)
        assert t.run().status == "succeeded"
        largest[c] = max(float(n.max()) for n in _row_norms(t.model))
    assert largest[None] > 1.5  # measured ~2.2: without the constraint rows grow past c
    assert largest[1.0] <= 1.0 + TOL
    assert largest[1.0] > 0.99  # and the constraint is active, not merely satisfied


def test_under_l0_gates_the_underlying_weights_rows_are_projected(tmp_path, cache_dir):
    spec = make_spec(
        data={"name": "mnist1d", "n_train": 100, "n_val": 50, "n_test": 50},
        train={"optimizer": "sgd", "lr": 0.5, "batch_size": 50, "epochs": 1, "device": "cpu"},
        regularizers=[{"name": "l0", "strength": 0.0}, {"name": "max_norm", "c": 0.1}],
    )
    t = trainer(spec, tmp_path, cache_dir)
    layer = t.model.hidden_linears()[0]
    original = layer.parametrizations.weight.original
    assert float(original.detach().norm(dim=1).max()) > 0.1  # initialization is outside the ball
    t.run()
    assert float(original.detach().norm(dim=1).max()) <= 0.1 + TOL
