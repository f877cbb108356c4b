"""variational_dropout: one mask per sequence, reused at every step of the gru."""

from __future__ import annotations

import pytest
import torch

from regcore.regularizers.variational_dropout import SequenceDropout, sequence_mask
from regcore.spec import SpecError, parse_spec
from tests.regcore.runs import make_spec, train, trainer

GRU = {"name": "gru", "hidden_size": 16}


def test_sequence_mask_is_zero_or_one_over_keep():
    torch.manual_seed(0)
    m = sequence_mask(torch.ones(1000, 8), 0.25)
    assert torch.allclose(m.unique(), torch.tensor([0.0, 1 / 0.75]))
    assert float((m == 0).float().mean()) == pytest.approx(0.25, abs=0.02)


def test_the_same_units_are_dropped_at_every_step(tmp_path, cache_dir):
    spec = make_spec(model=GRU, regularizers=[{"name": "variational_dropout", "p": 0.5}])
    model = trainer(spec, tmp_path, cache_dir).model.train()
    op = model.step_state.ops[0]
    assert isinstance(op, SequenceDropout)
    zeros = []
    op.register_forward_hook(lambda m, inp, out: zeros.append((out == 0) & (inp[0] != 0)))
    model(torch.randn(8, 40))
    assert len(zeros) == 40
    dropped = [z for z in zeros[1:]]  # h_0 is all zero, so step 0 shows nothing
    assert dropped[0].any()
    assert all(torch.equal(z, dropped[0]) for z in dropped)
    model(torch.randn(8, 40))  # a new batch of sequences draws a new mask
    assert not torch.equal(zeros[-1], dropped[0])


def test_eval_is_deterministic(tmp_path, cache_dir):
    spec = make_spec(model=GRU, regularizers=[{"name": "variational_dropout", "input_p": 0.2}])
    tr = trainer(spec, tmp_path, cache_dir)
    x = tr.data.test.x[:16]
    tr.model.eval()
    assert torch.equal(tr.model(x), tr.model(x))


def test_it_needs_the_gru_model():
    with pytest.raises(SpecError, match="gru"):
        parse_spec(
            {
                "data": {"name": "mnist1d"},
                "model": {"name": "mlp"},
                "regularizers": [{"name": "variational_dropout"}],
            }
        )


def test_a_gru_run_with_variational_dropout_learns(tmp_path, cache_dir):
    spec = make_spec(
        model=GRU,
        data={"name": "mnist1d", "n_train": 300, "n_val": 100, "n_test": 200},
        regularizers=[{"name": "variational_dropout", "p": 0.2}],
        train={"optimizer": "adam", "lr": 0.01, "batch_size": 50, "epochs": 3, "device": "cpu"},
    )
    result = train(spec, tmp_path, cache_dir)
    assert result.status == "succeeded" and result.metrics["train_acc"] > 0.15
