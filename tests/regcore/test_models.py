"""Models: output shapes, slots and hidden linear layers of each built-in architecture."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from regcore.models import build_model
from regcore.spec import CNN1DSpec, LinearModelSpec, MLPSpec, ResMLPSpec

# spec, (input slots, hidden slots, conv slots), hidden linears
CASES = {
    "linear": (LinearModelSpec(), (1, 0, 0), 0),
    "mlp": (MLPSpec(hidden=[32, 16]), (1, 2, 0), 2),
    "mlp_bn": (MLPSpec(hidden=[32, 16, 8], batch_norm=True, activation="tanh"), (1, 3, 0), 3),
    "cnn1d": (CNN1DSpec(channels=[4, 8], kernel_size=5, hidden=[16]), (1, 1, 2), 1),
    "resmlp": (ResMLPSpec(width=16, blocks=3), (1, 5, 0), 7),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_model_maps_a_batch_to_one_output_per_class(case):
    spec, _, _ = CASES[case]
    torch.manual_seed(0)
    model = build_model(spec, in_features=40, out_features=10)
    out = model(torch.randn(7, 40))
    assert out.shape == (7, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_model_exposes_its_slots_and_hidden_linears(case):
    spec, (n_input, n_hidden, n_conv), n_linears = CASES[case]
    model = build_model(spec, in_features=40, out_features=3)
    assert len(model.slots("input")) == n_input
    assert len(model.slots("hidden")) == n_hidden
    assert len(model.slots("conv")) == n_conv
    assert len(model.slots()) == n_input + n_hidden + n_conv
    linears = model.hidden_linears()
    assert len(linears) == n_linears
    head = model.head()
    assert isinstance(head, nn.Linear) and head.out_features == 3
    assert all(lin is not head for lin in linears)


def test_an_empty_slot_is_the_identity_and_ops_apply_in_order():
    model = build_model(MLPSpec(hidden=[8]), in_features=4, out_features=2)
    slot = model.slots("hidden")[0]
    h = torch.randn(3, 8)
    assert torch.equal(slot(h), h)
    slot.ops.append(nn.Identity())
    slot.ops.append(nn.ReLU())
    assert torch.equal(slot(h), h.relu())


def test_a_hidden_slot_sees_each_hidden_activation():
    model = build_model(MLPSpec(hidden=[8, 6]), in_features=4, out_features=2)
    seen = []

    class Record(nn.Module):
        def forward(self, x):
            seen.append(x.shape[1])
            return x

    for slot in model.slots("hidden"):
        slot.ops.append(Record())
    model(torch.randn(2, 4))
    assert seen == [8, 6]


def test_a_regression_model_has_one_output():
    model = build_model(MLPSpec(hidden=[8]), in_features=1, out_features=1)
    assert model(torch.randn(5, 1)).shape == (5, 1)


def test_the_same_seed_initializes_the_same_weights():
    def params(seed):
        torch.manual_seed(seed)
        return torch.cat([p.flatten() for p in build_model(MLPSpec(), 40, 10).parameters()])

    assert torch.equal(params(0), params(0))
    assert not torch.equal(params(0), params(1))
