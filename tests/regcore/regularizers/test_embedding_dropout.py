"""embedding_dropout: whole tokens dropped, kept ones rescaled; deterministic eval."""

from __future__ import annotations

import pytest
import torch

from regcore.regularizers.embedding_dropout import TokenDropout, drop_tokens
from regcore.spec import SpecError, parse_spec
from tests.regcore.runs import make_spec, train, trainer

TRANSFORMER = {"name": "transformer", "d_model": 16, "heads": 2, "layers": 1, "ff": 32}


def test_drop_tokens_zeroes_whole_tokens_and_scales_the_rest():
    x = torch.ones(1, 3, 2)
    keep = torch.tensor([[1.0, 0.0, 1.0]])
    expected = torch.tensor([[[2.0, 2.0], [0.0, 0.0], [2.0, 2.0]]])
    assert torch.equal(drop_tokens(x, keep, 0.5), expected)


def test_a_token_is_dropped_as_a_whole_with_probability_p():
    torch.manual_seed(0)
    out = TokenDropout(0.3).train()(torch.ones(500, 10, 8))
    zero_tokens = (out == 0).all(-1)
    assert torch.equal((out == 0).any(-1), zero_tokens)  # never part of a token
    assert float(zero_tokens.float().mean()) == pytest.approx(0.3, abs=0.02)


def test_the_transformer_gets_it_on_its_embedding_slot_and_eval_is_deterministic(
    tmp_path, cache_dir
):
    spec = make_spec(model=TRANSFORMER, regularizers=[{"name": "embedding_dropout", "p": 0.5}])
    tr = trainer(spec, tmp_path, cache_dir)
    assert isinstance(tr.model.slots("embedding")[0].ops[0], TokenDropout)
    x = tr.data.test.x[:16]
    tr.model.eval()
    assert torch.equal(tr.model(x), tr.model(x))
    tr.model.train()
    assert not torch.equal(tr.model(x), tr.model(x))


def test_a_model_without_embeddings_is_a_spec_error():
    with pytest.raises(SpecError, match="regularizers\\[0\\].*transformer"):
        parse_spec(
            {
                "data": {"name": "mnist1d"},
                "model": {"name": "mlp"},
                "regularizers": [{"name": "embedding_dropout"}],
            }
        )


def test_a_transformer_run_with_embedding_dropout_learns(tmp_path, cache_dir):
    spec = make_spec(
        model=TRANSFORMER,
        regularizers=[{"name": "embedding_dropout", "p": 0.1}],
        train={"optimizer": "adam", "lr": 0.01, "batch_size": 50, "epochs": 5, "device": "cpu"},
    )
    result = train(spec, tmp_path, cache_dir)
    assert result.status == "succeeded" and result.metrics["test_acc"] > 0.2
