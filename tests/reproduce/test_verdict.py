"""The verdict logic on synthetic statistics: holds, does not hold, not robust, close."""

from __future__ import annotations

import math

import pytest

from regcore.reproduce.claims import CLAIMS, Statistic
from regcore.reproduce.runner import arm_spec, merge
from regcore.reproduce.verdict import decide, interval, per_seed_values

GREATER = Statistic("greater", "sparsity", a="l1", b="l2")
CLOSE = Statistic("close", "weight_l2", a="noise", b="ridge", tolerance=0.02)


def test_a_consistent_positive_difference_holds() -> None:
    v = decide(GREATER, [0.50, 0.55, 0.60])
    assert v.holds and v.word == "holds"
    assert v.low > 0 and math.isclose(v.mean, 0.55)


def test_the_wrong_direction_does_not_hold() -> None:
    v = decide(GREATER, [-0.2, -0.1, -0.15])
    assert not v.holds and v.word == "does not hold"
    assert "not in the claimed direction" in v.reason


def test_a_noisy_positive_mean_is_not_robust() -> None:
    v = decide(GREATER, [0.3, -0.25, 0.1])
    assert v.mean > 0 and not v.holds
    assert "not robust" in v.reason


def test_the_interval_is_the_t_interval() -> None:
    mean, low, high = interval([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert math.isclose(high - mean, 4.302652729911275 * 1.0 / math.sqrt(3), rel_tol=1e-9)


def test_close_holds_within_tolerance_and_not_beyond() -> None:
    assert decide(CLOSE, [0.001, 0.002, 0.0015]).holds
    far = decide(CLOSE, [0.05, 0.06, 0.04])
    assert not far.holds and "above the tolerance" in far.reason


def test_a_missing_value_does_not_hold() -> None:
    assert not decide(GREATER, [0.5, math.nan, 0.6]).holds


def test_per_seed_values_take_differences_and_relative_gaps() -> None:
    runs = {"l1": [{"sparsity": 0.7}], "l2": [{"sparsity": 0.1}]}
    specs = {"l1": [{}], "l2": [{}]}
    assert per_seed_values(GREATER, runs, specs) == [pytest.approx(0.6)]
    ens = Statistic("close", "ens_sq_error", a="e", b="e", b_metric="ens_formula")
    m = {"ens_v": 0.4, "ens_c": 0.2, "ens_sq_error": 0.25}
    spec = {"ensemble": {"members": 4}}
    # v/k + (k−1)c/k = 0.1 + 0.15 = 0.25
    assert per_seed_values(ens, {"e": [m]}, {"e": [spec]}) == [pytest.approx(0.0)]


def test_every_claim_is_complete_and_its_arm_specs_parse() -> None:
    from regcore.spec import parse_spec

    assert len({c.id for c in CLAIMS}) == len(CLAIMS)
    for c in CLAIMS:
        assert c.claim and c.source[:3].isdigit()
        assert {c.statistic.a, c.statistic.b} <= set(c.arms)
        for arm in c.arms:
            for quick in (False, True):
                parse_spec(arm_spec(c, arm, seed=1, quick=quick))


def test_arm_overrides_replace_lists_and_merge_mappings() -> None:
    base = {"train": {"lr": 0.1, "epochs": 4}, "regularizers": [{"name": "l2"}]}
    got = merge(base, {"train": {"lr": 0.2}, "regularizers": []})
    assert got == {"train": {"lr": 0.2, "epochs": 4}, "regularizers": []}
