"""Dropout inference rules: weight scaling, the arithmetic (MC) and the geometric mean of sampled
sub-networks, against the exact enumeration of every mask of a tiny network."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from regcore.data import Dataset, Split
from regcore.inference.mc_dropout import combine_passes, mc_metrics, mc_outputs
from regcore.spec import SpecError
from tests.regcore.runs import make_spec

P = 0.5  # drop probability
UNITS = 4


def _net(dropout_first: bool) -> nn.Sequential:
    """4 hidden units with dropout on them, before the softmax layer or before a further
    nonlinear layer."""
    torch.manual_seed(0)
    if dropout_first:  # dropout → tanh → linear: the logits are nonlinear in the mask
        layers = [nn.Linear(3, UNITS), nn.Dropout(P), nn.Tanh(), nn.Linear(UNITS, 3)]
    else:  # linear → tanh → dropout → linear: logits linear in the mask
        layers = [nn.Linear(3, UNITS), nn.Tanh(), nn.Dropout(P), nn.Linear(UNITS, 3)]
    net = nn.Sequential(*layers)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)  # strong weights: the rules differ visibly
    return net


def _exact(net: nn.Sequential, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(arithmetic, geometric) means over all 2^UNITS masks, weighted by their probabilities;
    the geometric one normalized: Π_m p_m^{P(m)} / Σ_y Π_m p_m(y)^{P(m)}."""
    drop = next(i for i, m in enumerate(net) if isinstance(m, nn.Dropout))
    before, after = net[:drop], net[drop + 1 :]
    h = before(x)
    arith = torch.zeros(x.shape[0], 3, dtype=torch.float64)
    log_geo = torch.zeros(x.shape[0], 3, dtype=torch.float64)
    for bits in itertools.product((0.0, 1.0), repeat=UNITS):
        mask = torch.tensor(bits)
        weight = (1 - P) ** mask.sum() * P ** (UNITS - mask.sum())
        logp = after(h * mask / (1 - P)).log_softmax(-1).double()
        arith += weight * logp.exp()
        log_geo += weight * logp
    return arith, log_geo.softmax(-1)


@pytest.mark.parametrize("dropout_first", [False, True])
def test_sampled_geometric_mean_matches_the_exact_enumeration_over_masks(dropout_first):
    net = _net(dropout_first).eval()
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    arith, geo = _exact(net, x)
    torch.manual_seed(2)
    outs = mc_outputs(net, x, passes=20000)
    sampled_geo = combine_passes(outs, "geometric").double()
    sampled_arith = combine_passes(outs, "arithmetic").double()
    assert torch.allclose(sampled_geo, geo, atol=0.01)
    assert torch.allclose(sampled_arith, arith, atol=0.01)
    assert (geo - arith).abs().max() > 0.05  # the two rules are different numbers here
    with torch.no_grad():
        scaled = net(x).softmax(-1).double()  # eval: the weight-scaling rule
    if dropout_first:  # a nonlinearity after the mask: weight scaling only approximates it
        assert (scaled - geo).abs().max() > 0.02
    else:  # dropout right before the softmax layer: weight scaling is the geometric mean
        assert torch.allclose(scaled, geo, atol=1e-5)


def test_mc_metrics_report_each_rule_under_its_own_keys():
    net = _net(True)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(200, 3, generator=gen)
    y = net.eval()(x).argmax(1)
    split = Split(x, y)
    data = Dataset("toy", "classification", 3, split, split, split)
    torch.manual_seed(0)
    gm = mc_metrics(net, data, passes=50, rule="geometric")
    torch.manual_seed(0)
    mc = mc_metrics(net, data, passes=50, rule="arithmetic")
    assert set(gm) == {"gm_test_loss", "gm_test_acc", "gm_predictive_entropy"}
    assert set(mc) == {"mc_test_loss", "mc_test_acc", "mc_predictive_entropy"}
    assert gm["gm_test_loss"] != mc["mc_test_loss"]
    assert net.training is False


def test_the_rule_is_chosen_in_the_spec_and_runs(tmp_path, cache_dir):
    from regcore.experiment import run

    spec = make_spec(
        data={"name": "mnist1d", "n_train": 300, "n_val": 100, "n_test": 200},
        train={"epochs": 2, "batch_size": 50, "device": "cpu"},
        regularizers=[{"name": "l2", "strength": 1e-4}, {"name": "dropout", "p": 0.3}],
        mc_dropout={"passes": 5, "rule": "geometric"},
    )
    result = run(spec, tmp_path, cache_dir=cache_dir, threads=1, checkpoint_every=0)
    assert 0.0 < result.metrics["gm_test_acc"] <= 1.0 and "mc_test_acc" not in result.metrics
    with pytest.raises(SpecError) as err:
        make_spec(regularizers=[{"name": "dropout"}], mc_dropout={"rule": "harmonic"})
    assert err.value.errors[0]["field"] == "mc_dropout.rule"
