"""Expanding a sweep request into validated specs; errors name the field that caused them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.sweeps.plan import MAX_EXPERIMENTS, PlanError, SweepRequest, expand

BASE = {
    "seed": 7,
    "data": {"name": "mnist1d", "n_train": 300},
    "model": {"name": "mlp", "hidden": [32]},
    "regularizers": [{"name": "l2", "strength": 1e-3}],
}


def test_a_grid_with_seeds_gives_one_validated_spec_per_point_and_seed():
    plan = expand(
        SweepRequest(
            base=BASE,
            space={"regularizers[0].strength": [1e-4, 1e-2], "train.lr": [0.01, 0.1]},
            seeds=2,
        )
    )
    assert len(plan.configs) == 4 and len(plan.trials) == 8
    assert [(t.config, t.seed) for t in plan.trials[:3]] == [(0, 7), (0, 8), (1, 7)]
    last = plan.trials[-1].spec
    assert last.regularizers[0].strength == 1e-2 and last.train.lr == 0.1 and last.seed == 8


def test_explicit_seeds_are_used_as_given():
    plan = expand(SweepRequest(base=BASE, seeds=[3, 11]))
    assert [t.seed for t in plan.trials] == [3, 11]


def test_a_space_value_the_spec_refuses_is_a_422_on_that_space_path():
    with pytest.raises(PlanError) as err:
        expand(SweepRequest(base=BASE, space={"regularizers[0].strength": [0.1, -1.0]}))
    assert err.value.errors[0]["field"] == "space.regularizers[0].strength"
    assert "-1.0" in err.value.errors[0]["message"]


def test_an_invalid_base_spec_is_blamed_on_the_base():
    bad = {**BASE, "regularizers": [{"name": "dropout", "p": 2}]}
    with pytest.raises(PlanError) as err:
        expand(SweepRequest(base=bad))
    assert err.value.errors[0]["field"] == "base.regularizers[0].p"


def test_a_bad_factor_is_blamed_on_the_factor():
    with pytest.raises(PlanError) as err:
        expand(
            SweepRequest(
                base=BASE,
                method="factorial",
                factors=[{"name": "dropout", "p": 0.2}, {"name": "l1", "strength": -1}],
            )
        )
    assert err.value.errors[0]["field"] == "factors[1].strength"


def test_factorial_switches_each_factor_on_and_off_after_the_base_regularizers():
    plan = expand(
        SweepRequest(
            base=BASE,
            method="factorial",
            factors=[{"name": "dropout", "p": 0.2}, {"name": "l1", "strength": 1e-4}],
        )
    )
    assert plan.factors == ["dropout", "l1"]
    names = [[r.name for r in t.spec.regularizers] for t in plan.trials]
    assert names == [["l2"], ["l2", "l1"], ["l2", "dropout"], ["l2", "dropout", "l1"]]


def test_too_many_experiments_are_refused():
    with pytest.raises(PlanError, match=f"at most {MAX_EXPERIMENTS}"):
        expand(SweepRequest(base=BASE, space={"train.lr": [0.01 * i for i in range(1, 101)]},
                            seeds=11))  # fmt: skip


@pytest.mark.parametrize(
    "body",
    [
        {"base": BASE, "method": "random"},
        {"base": BASE, "trials": 3},
        {"base": BASE, "method": "factorial"},
        {"base": BASE, "seeds": 0},
        {"base": BASE, "seeds": [1, 1]},
        {"base": BASE, "metric": "val_loss; drop"},
        {"base": BASE, "early_stopping": {"rule": "asha", "reduction_factor": 1}},
        {"base": BASE, "unknown": 1},
        {"base": {**BASE, "train": {"steps": 100}}, "early_stopping": {"rule": "asha"}},
        {"base": BASE, "space": {"train.steps": [50, 100]}, "early_stopping": {"rule": "median"}},
    ],
)
def test_inconsistent_requests_are_refused(body):
    with pytest.raises(ValidationError):
        SweepRequest.model_validate(body)


def test_the_mode_defaults_to_max_for_accuracies():
    assert SweepRequest(base=BASE, metric="val_acc").direction == "max"
    assert SweepRequest(base=BASE, metric="val_loss").direction == "min"
