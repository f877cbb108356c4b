"""The gru and transformer models and the residual cnn1d: shapes, slots, and that they train."""

from __future__ import annotations

import pytest
import torch

from regcore.models import build_model
from regcore.models.cnn1d import ResidualConvBlock
from regcore.models.gru import GRU
from regcore.spec import CNN1DSpec, GRUSpec, SpecError, TransformerSpec, parse_spec


def test_the_gru_reads_one_feature_per_step():
    model = build_model(GRUSpec(hidden_size=8), 40, 10)
    assert isinstance(model, GRU)
    calls = []
    model.step_input.register_forward_hook(lambda m, i, o: calls.append(o.shape))
    assert model(torch.randn(3, 40)).shape == (3, 10)
    assert calls == [(3, 1)] * 40


def test_the_transformer_cuts_the_input_into_patches_with_attention_and_embedding_slots():
    model = build_model(TransformerSpec(patch_size=4, d_model=8, heads=2, layers=2), 40, 10)
    assert model(torch.randn(3, 40)).shape == (3, 10)
    assert len(model.slots("attention")) == 2 and len(model.slots("embedding")) == 1
    seen = []
    model.slots("embedding")[0].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    model(torch.randn(3, 40))
    assert seen == [(3, 10, 8)]


def test_a_patch_size_that_does_not_divide_the_input_is_rejected():
    with pytest.raises(ValueError, match="patch_size"):
        build_model(TransformerSpec(patch_size=3), 40, 10)
    with pytest.raises(SpecError, match="heads"):
        parse_spec({"data": {"name": "mnist1d"}, "model": {"name": "transformer", "heads": 3}})


def test_the_residual_cnn1d_adds_a_shortcut_around_each_later_conv():
    model = build_model(CNN1DSpec(channels=[4, 4, 8], hidden=[16], residual=True), 40, 10)
    blocks = [m for m in model.modules() if isinstance(m, ResidualConvBlock)]
    assert len(blocks) == 2
    assert isinstance(blocks[0].shortcut, torch.nn.Identity)
    assert isinstance(blocks[1].shortcut, torch.nn.Conv1d)  # 4 → 8 channels
    x = torch.randn(2, 4, 40)
    assert torch.allclose(blocks[0](x), x + blocks[0].branch(x))
    assert model(torch.randn(2, 40)).shape == (2, 10)


def test_the_plain_cnn1d_keeps_its_parameter_names():
    plain = build_model(CNN1DSpec(channels=[4, 4], hidden=[8]), 40, 10)
    assert "features.0.weight" in dict(plain.named_parameters())
    assert "features.3.weight" in dict(plain.named_parameters())
