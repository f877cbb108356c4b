"""The median stopping rule and ASHA on rigged metric curves."""

from __future__ import annotations

import pytest

from service.sweeps.early_stop import asha, asha_cutoff, asha_rungs, median_stopping


def test_asha_rungs_grow_geometrically_below_the_budget():
    assert asha_rungs(1, 3, 30) == [1, 3, 9, 27]
    assert asha_rungs(2, 2, 16) == [2, 4, 8]
    assert asha_rungs(5, 3, 5) == []


def test_asha_stops_the_trials_outside_the_top_half_at_the_first_rung():
    # val_acc at epoch 1 (rung 1 of rf=2): a and b lead, c and d trail
    curves = {"a": {1: 0.9}, "b": {1: 0.8}, "c": {1: 0.3}, "d": {1: 0.2}}
    stops = asha(curves, curves.keys(), metric="val_acc", mode="max", max_epochs=8,
                 min_epochs=1, reduction_factor=2)  # fmt: skip
    assert set(stops) == {"c", "d"}
    assert stops["c"].startswith("stopped by ASHA at epoch 1: val_acc 0.3")


def test_asha_judges_a_loss_the_other_way_round():
    curves = {"a": {1: 0.1}, "b": {1: 0.2}, "c": {1: 2.0}, "d": {1: 3.0}}
    stops = asha(curves, curves.keys(), metric="val_loss", mode="min", max_epochs=8,
                 min_epochs=1, reduction_factor=2)  # fmt: skip
    assert set(stops) == {"c", "d"}


def test_asha_judges_each_trial_at_its_highest_rung_only_and_alone_it_continues():
    curves = {
        # reached rung 2 and is the best there, though it was poor at rung 1
        "late": {1: 0.1, 2: 0.95},
        "early": {1: 0.9, 2: 0.5},
        "alone": {1: 0.5, 2: 0.6, 3: 0.7, 4: 0.8},  # the only one at rung 4
    }
    stops = asha(curves, ["late", "early", "alone"], metric="acc", mode="max", max_epochs=8,
                 min_epochs=1, reduction_factor=2)  # fmt: skip
    assert set(stops) == {"early"}
    assert "epoch 2" in stops["early"]


def test_asha_only_stops_running_trials_and_waits_for_a_rung():
    curves = {"done": {1: 0.9}, "run": {1: 0.1}, "young": {}}
    assert asha(curves, ["young"], metric="acc", mode="max", max_epochs=8,
                min_epochs=1, reduction_factor=2) == {}  # fmt: skip
    assert set(asha(curves, ["run"], metric="acc", mode="max", max_epochs=8,
                    min_epochs=1, reduction_factor=2)) == {"run"}  # fmt: skip


def test_asha_cutoff_is_the_top_fraction_quantile():
    assert asha_cutoff([1.0, 2.0, 3.0, 4.0, 5.0], 2, "max") == pytest.approx(3.0)
    assert asha_cutoff([1.0, 2.0, 3.0, 4.0], 4, "min") == pytest.approx(1.75)


def test_the_median_rule_stops_a_trial_worse_than_the_median_of_running_averages():
    curves = {
        "good1": {1: 0.5, 2: 0.6, 3: 0.7},
        "good2": {1: 0.55, 2: 0.65, 3: 0.75},
        "good3": {1: 0.6, 2: 0.7, 3: 0.8},
        "bad": {1: 0.1, 2: 0.2, 3: 0.3},
        "ok": {1: 0.5, 2: 0.7, 3: 0.75},  # best 0.75 > median of others' averages (0.65)
    }
    stops = median_stopping(curves, ["bad", "ok"], metric="val_acc", mode="max",
                            grace_epochs=2, min_trials=3)  # fmt: skip
    assert set(stops) == {"bad"}
    assert "median rule at epoch 3" in stops["bad"]


def test_the_median_rule_waits_for_the_grace_period_and_enough_trials():
    curves = {"a": {1: 0.9}, "b": {1: 0.8}, "c": {1: 0.7}, "bad": {1: 0.0}}
    assert median_stopping(curves, ["bad"], metric="acc", mode="max", grace_epochs=2,
                           min_trials=3) == {}  # fmt: skip
    assert median_stopping(curves, ["bad"], metric="acc", mode="max", grace_epochs=1,
                           min_trials=4) == {}  # fmt: skip
    assert set(median_stopping(curves, ["bad"], metric="acc", mode="max", grace_epochs=1,
                               min_trials=3)) == {"bad"}  # fmt: skip
