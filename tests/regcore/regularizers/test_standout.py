"""standout: keep probability, both scalings, α=0 equals dropout, deterministic eval."""

from __future__ import annotations

import math

import pytest
import torch

from regcore.regularizers.standout import StandoutLayer, keep_probability, standout
from tests.regcore.runs import make_spec, train, trainer


def test_keep_probability_is_the_sigmoid_of_alpha_a_plus_beta():
    a = torch.tensor([0.0, 1.0, -2.0])
    expected = torch.sigmoid(torch.tensor([0.5, 2.5, -3.5]))
    assert torch.allclose(keep_probability(a, 2.0, 0.5), expected)


def test_standout_masks_in_training_and_uses_pi_or_identity_at_eval():
    a = torch.tensor([2.0, 4.0])
    keep = torch.tensor([0.5, 0.8])
    mask = torch.tensor([0.0, 1.0])
    assert torch.equal(standout(a, keep, mask, "expectation"), torch.tensor([0.0, 4.0]))
    assert torch.allclose(standout(a, keep, mask, "inverted"), torch.tensor([0.0, 5.0]))
    assert torch.allclose(standout(a, keep, None, "expectation"), torch.tensor([1.0, 3.2]))
    assert torch.equal(standout(a, keep, None, "inverted"), a)


def test_alpha_zero_is_dropout_with_keep_sigmoid_beta():
    torch.manual_seed(0)
    beta = 0.4
    layer = StandoutLayer(0.0, beta, "inverted").train()
    x = torch.rand(200, 500) + 0.5
    out = layer(x)
    kept = (out != 0).float().mean()
    keep = 1 / (1 + math.exp(-beta))
    assert float(kept) == pytest.approx(keep, abs=0.01)
    assert torch.allclose(out[out != 0], (x / keep)[out != 0])


def test_more_active_units_are_kept_more_often():
    torch.manual_seed(0)
    layer = StandoutLayer(2.0, -1.0, "expectation").train()
    x = torch.cat([torch.full((20000, 1), 0.1), torch.full((20000, 1), 2.0)], dim=1)
    kept = (layer(x) != 0).float().mean(0)
    assert kept[1] > kept[0] + 0.3


def test_eval_is_deterministic(tmp_path, cache_dir):
    spec = make_spec(regularizers=[{"name": "standout"}])
    tr = trainer(spec, tmp_path, cache_dir)
    x = tr.data.test.x[:64]
    tr.model.eval()
    assert torch.equal(tr.model(x), tr.model(x))
    tr.model.train()
    assert not torch.equal(tr.model(x), tr.model(x))


def test_a_run_with_standout_learns(tmp_path, cache_dir):
    result = train(make_spec(regularizers=[{"name": "standout"}]), tmp_path, cache_dir)
    assert result.status == "succeeded" and result.metrics["test_acc"] > 0.2
