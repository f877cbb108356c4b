"""stochastic_depth: skip probabilities, drop_path, hooks on resmlp and residual cnn1d, effect."""

from __future__ import annotations

import pytest
import torch

from regcore.models.cnn1d import ResidualConvBlock
from regcore.regularizers.stochastic_depth import DropPath, drop_path, skip_probabilities
from regcore.spec import SpecError, parse_spec
from tests.regcore.runs import make_spec, train, trainer


def test_skip_probabilities_rise_linearly_to_p():
    assert skip_probabilities(0.5, 4) == pytest.approx([0.125, 0.25, 0.375, 0.5])


def test_drop_path_zeroes_dropped_examples_and_scales_kept_ones():
    out = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    keep = torch.tensor([1.0, 0.0, 1.0])
    got = drop_path(out, keep, 0.5)
    assert torch.equal(got, torch.tensor([[2.0, 4.0], [0.0, 0.0], [10.0, 12.0]]))


def test_drop_path_preserves_the_expected_output():
    torch.manual_seed(0)
    branch = torch.nn.Linear(3, 3)
    layer = DropPath(branch, 0.3).train()
    x = torch.randn(20000, 3)
    x[:] = x[0]  # one input, many draws
    mean = layer(x).mean(0)
    assert torch.allclose(mean, branch(x[:1])[0], atol=0.03)


def test_resmlp_blocks_get_linearly_rising_skip_probabilities(tmp_path, cache_dir):
    spec = make_spec(
        model={"name": "resmlp", "width": 16, "blocks": 3},
        regularizers=[{"name": "stochastic_depth", "p": 0.6}],
    )
    model = trainer(spec, tmp_path, cache_dir).model
    ps = [b.branch.p for b in model.blocks]
    assert ps == pytest.approx([0.2, 0.4, 0.6])


def test_residual_cnn1d_blocks_are_wrapped(tmp_path, cache_dir):
    spec = make_spec(
        model={"name": "cnn1d", "channels": [4, 4, 8], "hidden": [16], "residual": True},
        regularizers=[{"name": "stochastic_depth", "p": 0.5}],
    )
    model = trainer(spec, tmp_path, cache_dir).model
    blocks = [m for m in model.modules() if isinstance(m, ResidualConvBlock)]
    assert len(blocks) == 2 and all(isinstance(b.branch, DropPath) for b in blocks)
    assert [b.branch.p for b in blocks] == pytest.approx([0.25, 0.5])


def test_a_plain_cnn1d_is_rejected_with_a_clear_message():
    with pytest.raises(SpecError, match="residual"):
        parse_spec(
            {
                "data": {"name": "mnist1d"},
                "model": {"name": "cnn1d"},
                "regularizers": [{"name": "stochastic_depth"}],
            }
        )


def test_eval_is_deterministic_and_training_is_not(tmp_path, cache_dir):
    spec = make_spec(
        model={"name": "resmlp", "width": 16, "blocks": 2},
        regularizers=[{"name": "stochastic_depth", "p": 0.5}],
    )
    tr = trainer(spec, tmp_path, cache_dir)
    x = tr.data.test.x[:64]
    tr.model.eval()
    assert torch.equal(tr.model(x), tr.model(x))
    tr.model.train()
    assert not torch.equal(tr.model(x), tr.model(x))


def test_a_run_with_stochastic_depth_trains_and_differs_from_one_without(tmp_path, cache_dir):
    base = dict(model={"name": "resmlp", "width": 32, "blocks": 3})
    plain = train(make_spec(**base), tmp_path / "a", cache_dir)
    sd = train(
        make_spec(**base, regularizers=[{"name": "stochastic_depth", "p": 0.5}]),
        tmp_path / "b",
        cache_dir,
    )
    assert sd.status == "succeeded"
    assert sd.metrics["test_acc"] > 0.2  # it learns (chance is 0.1)
    assert sd.metrics["train_loss"] != plain.metrics["train_loss"]
