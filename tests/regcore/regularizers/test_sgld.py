"""sgld: the burn-in step is l2's SGD step, the Langevin noise has std √(2·lr·T/N), samples are
thinned and kept, the MAP estimate is returned, and the predictive is better calibrated."""

from __future__ import annotations

import pytest
import torch

from regcore.bayes.prior import l2_strength
from regcore.regularizers.sgld import langevin_std
from regcore.spec import SpecError
from scripts.bayes_calibration import EFFECT_RUNS
from tests.regcore.bayes.common import first_batch, params
from tests.regcore.runs import history, make_spec, train, trainer

N = 500  # make_spec's n_train


def _pair(tmp_path, cache_dir, **sgld):
    prior_var = sgld.get("prior_var", 1.0)
    a = trainer(make_spec(regularizers=[{"name": "sgld", **sgld}]), tmp_path / "a", cache_dir)
    lam = l2_strength(prior_var, N)
    b = trainer(
        make_spec(regularizers=[{"name": "l2", "strength": lam}]), tmp_path / "b", cache_dir
    )
    return a, b


def test_a_langevin_step_adds_noise_of_the_predicted_spread(tmp_path, cache_dir):
    a, b = _pair(tmp_path, cache_dir, burn_in=1, burn_in_unit="steps", temperature=0.5)
    for tr in (a, b):
        tr.train_step(*first_batch(tr), {})  # burn-in: the same step
    start = params(a)
    for tr, src in ((a, start), (b, start)):  # the same start, the same gradient
        with torch.no_grad():
            for p, s in zip(tr.model.parameters(), src, strict=True):
                p.copy_(s)
        tr.train_step(*first_batch(tr), {})
    noise = torch.cat([(p - q).reshape(-1) for p, q in zip(params(a), params(b), strict=True)])
    want = langevin_std(0.1, N, 0.5)
    assert noise.numel() > 2000
    assert float(noise.std()) == pytest.approx(want, rel=0.05)
    assert float(noise.mean()) == pytest.approx(0.0, abs=want / 10)


def test_samples_are_thinned_and_the_map_estimate_is_returned(tmp_path, cache_dir):
    # 500 examples / 50 = 10 steps an epoch, 4 epochs: 15 burn-in steps, then 25 Langevin steps
    sgld = {"name": "sgld", "burn_in": 15, "burn_in_unit": "steps", "thin": 4, "samples": 3}
    tr = trainer(make_spec(regularizers=[sgld]), tmp_path, cache_dir)
    snapshots = {}
    for _ in range(4):
        for start in range(0, 500, 50):
            tr.train_step(
                tr.data.train.x[start : start + 50], tr.data.train.y[start : start + 50], {}
            )
            snapshots[tr.step_index] = params(tr)
    reg = tr.regs[0]
    assert len(reg.kept) == 3  # Langevin steps 4, 8, ..., 24 were kept; the last three remain
    for step, kept in zip((15 + 16, 15 + 20, 15 + 24), reg.kept, strict=True):
        got = [kept[n] for n, _ in tr.model.named_parameters()]
        assert all(torch.equal(g, s) for g, s in zip(got, snapshots[step], strict=True))
    model = reg.finalize(tr.model)
    assert all(torch.equal(p, s) for p, s in zip(params(tr), snapshots[15], strict=True))
    assert model is tr.model


def test_the_summary_holds_the_predictive_beside_map(tmp_path, cache_dir):
    spec = make_spec(regularizers=[{"name": "sgld", "burn_in": 2, "thin": 5, "samples": 4}])
    result = train(spec, tmp_path, cache_dir)
    m = result.metrics
    for key in ("test_loss", "test_acc", "ece", "sgld_test_loss", "sgld_test_acc", "sgld_ece"):
        assert key in m
    assert m["sgld_samples"] == 4.0
    h = history(tmp_path)
    assert len(h["sgld_ece"]) == 3  # epochs 3-5 have samples; epochs 1-2 are burn-in


def test_posterior_predictive_is_better_calibrated_than_map(tmp_path, cache_dir):
    """Small-data MNIST-1D, seed 0: the average over Langevin samples has a lower test ECE than
    the MAP estimate it started from (3 seeds measured in the issue's closing note)."""
    m = train(make_spec(**EFFECT_RUNS["sgld"]), tmp_path, cache_dir).metrics
    assert m["sgld_ece"] < m["ece"] - 0.05, (m["sgld_ece"], m["ece"])  # measured 0.238 vs 0.327
    assert m["sgld_test_acc"] > m["test_acc"] - 0.03


def _errors(**overrides) -> dict[str, str]:
    with pytest.raises(SpecError) as err:
        make_spec(**overrides)
    return {e["field"]: e["message"] for e in err.value.errors}


def test_bad_specs_are_refused_naming_the_field():
    adam = {"optimizer": "adam", "lr": 0.01, "epochs": 5}
    assert (
        "plain SGD"
        in _errors(regularizers=[{"name": "sgld", "burn_in": 1}], train=adam)["regularizers[0]"]
    )
    long = _errors(regularizers=[{"name": "sgld", "burn_in": 5}])
    assert "leave none" in long["regularizers[0].burn_in"]
    steps = {"name": "sgld", "burn_in": 20, "burn_in_unit": "steps"}
    by_steps = _errors(regularizers=[steps], train={"steps": 20, "device": "cpu"})
    assert "train.steps 20" in by_steps["regularizers[0].burn_in"]
    two = _errors(regularizers=[{"name": "sgld", "burn_in": 1}, {"name": "laplace"}])
    assert "one Bayesian method" in two["regularizers[1]"]
    toy = _errors(data={"name": "toy1d"}, regularizers=[{"name": "sgld", "burn_in": 1}])
    assert "classification" in toy["regularizers[0]"]
