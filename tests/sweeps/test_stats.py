"""Means and t intervals over seeds, the best configuration, factorial effects, by hand."""

from __future__ import annotations

import math

import pytest

from service.sweeps import stats
from service.sweeps.results import results


def test_mean_ci_is_the_t_interval_computed_by_hand():
    est = stats.mean_ci([1.0, 2.0, 4.0])
    mean = 7 / 3
    sd = math.sqrt(((1 - mean) ** 2 + (2 - mean) ** 2 + (4 - mean) ** 2) / 2)
    half = 4.302652729911275 * sd / math.sqrt(3)  # t_{0.975, 2} from a table
    assert est.mean == pytest.approx(mean) and est.n == 3
    assert est.low == pytest.approx(mean - half) and est.high == pytest.approx(mean + half)


def test_two_seeds_use_t_with_one_degree_of_freedom_and_one_seed_has_no_interval():
    est = stats.mean_ci([0.5, 0.7])
    assert est.high - est.mean == pytest.approx(
        12.706204736174707 * 0.1 * math.sqrt(2) / math.sqrt(2)
    )
    single = stats.mean_ci([0.5])
    assert (single.mean, single.low, single.high) == (0.5, None, None)
    assert stats.mean_ci([]) is None and stats.mean_ci([float("nan")]) is None


def test_the_results_table_groups_runs_by_configuration_and_picks_the_best():
    configs = [{"lr": 0.1}, {"lr": 0.01}]
    runs = [
        (0, {"metrics": {"val_loss": 1.0, "test_acc": 0.5}}),
        (0, {"metrics": {"val_loss": 1.2, "test_acc": 0.6}}),
        (1, {"metrics": {"val_loss": 0.4, "test_acc": 0.8}}),
        (1, {"metrics": {"val_loss": 0.6, "test_acc": 0.9}}),
    ]
    res = results(configs, runs, metric="val_loss", mode="min")
    assert res["table"][0]["metrics"]["val_loss"]["mean"] == pytest.approx(1.1)
    assert res["table"][1]["metrics"]["test_acc"]["mean"] == pytest.approx(0.85)
    assert res["best"]["config"] == 1 and res["best"]["params"] == {"lr": 0.01}
    assert results(configs, runs, metric="test_acc", mode="max")["best"]["config"] == 1
    assert results(configs, runs[:2], metric="val_loss", mode="min")["best"]["config"] == 0


def test_factorial_effects_match_a_hand_computation():
    # y = 10 + 2*A + 1*B + 0.5*A*B (±1 coding) plus seed noise ±0.1
    def y(a, b, e):
        xa, xb = (1 if a else -1), (1 if b else -1)
        return 10 + 2 * xa + 1 * xb + 0.5 * xa * xb + e

    cells = {(a, b): [y(a, b, 0.1), y(a, b, -0.1)] for a in (False, True) for b in (False, True)}
    out = stats.factorial_effects(["A", "B"], cells)
    # effect = twice the coefficient: mean(on) - mean(off)
    assert out["main_effects"]["A"]["effect"] == pytest.approx(4.0)
    assert out["main_effects"]["B"]["effect"] == pytest.approx(2.0)
    assert out["interactions"]["A:B"]["effect"] == pytest.approx(1.0)
    # pooled s^2 = 0.02 on 4 df; var(effect) = s^2 * 4 * (1/2)^2 / 2 = s^2 / 2
    half = 2.7764451051977987 * math.sqrt(0.02 / 2)
    a = out["main_effects"]["A"]
    assert a["df"] == 4 and a["ci_high"] - a["effect"] == pytest.approx(half)


def test_factorial_effects_without_replicates_have_no_interval_and_an_empty_cell_none():
    cells = {(False,): [1.0], (True,): [3.0]}
    out = stats.factorial_effects(["A"], cells)
    assert out["main_effects"]["A"] == {"effect": 2.0, "ci_low": None, "ci_high": None, "df": 0}
    assert stats.factorial_effects(["A"], {(False,): [1.0]}) is None
