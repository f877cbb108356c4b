"""attention_dropout: placed on the transformer's attention weights; deterministic eval."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from regcore.spec import SpecError, parse_spec
from tests.regcore.runs import make_spec, train, trainer

TRANSFORMER = {"name": "transformer", "d_model": 16, "heads": 2, "layers": 1, "ff": 32}


def test_dropout_sits_on_every_attention_slot(tmp_path, cache_dir):
    spec = make_spec(
        model={**TRANSFORMER, "layers": 2}, regularizers=[{"name": "attention_dropout", "p": 0.3}]
    )
    slots = trainer(spec, tmp_path, cache_dir).model.slots("attention")
    assert len(slots) == 2
    assert all(isinstance(s.ops[0], nn.Dropout) and s.ops[0].p == 0.3 for s in slots)


def test_attention_weights_are_dropped_and_rescaled_in_training(tmp_path, cache_dir):
    spec = make_spec(model=TRANSFORMER, regularizers=[{"name": "attention_dropout", "p": 0.5}])
    model = trainer(spec, tmp_path, cache_dir).model.train()
    slot = model.slots("attention")[0]
    seen = {}
    slot.register_forward_hook(lambda m, inp, out: seen.update(inp=inp[0], out=out))
    model(torch.randn(4, 40))
    kept = seen["out"] != 0
    assert 0.3 < float(kept.float().mean()) < 0.7
    assert torch.allclose(seen["out"][kept], 2 * seen["inp"][kept])
    assert torch.allclose(seen["inp"].sum(-1), torch.ones(()))  # softmax rows before dropout


def test_eval_is_deterministic(tmp_path, cache_dir):
    spec = make_spec(model=TRANSFORMER, regularizers=[{"name": "attention_dropout", "p": 0.5}])
    tr = trainer(spec, tmp_path, cache_dir)
    x = tr.data.test.x[:16]
    tr.model.eval()
    assert torch.equal(tr.model(x), tr.model(x))
    tr.model.train()
    assert not torch.equal(tr.model(x), tr.model(x))


def test_a_model_without_attention_is_a_spec_error():
    with pytest.raises(SpecError, match="transformer"):
        parse_spec(
            {
                "data": {"name": "mnist1d"},
                "model": {"name": "cnn1d"},
                "regularizers": [{"name": "attention_dropout"}],
            }
        )


def test_a_transformer_run_with_attention_dropout_learns(tmp_path, cache_dir):
    spec = make_spec(
        model=TRANSFORMER,
        regularizers=[{"name": "attention_dropout", "p": 0.1}],
        train={"optimizer": "adam", "lr": 0.01, "batch_size": 50, "epochs": 5, "device": "cpu"},
    )
    result = train(spec, tmp_path, cache_dir)
    assert result.status == "succeeded" and result.metrics["test_acc"] > 0.2
