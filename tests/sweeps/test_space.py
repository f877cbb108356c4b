"""Search spaces: paths into the spec, grid / random / factorial points."""

from __future__ import annotations

import math

import pytest

from service.sweeps.space import (
    Choice,
    IntUniform,
    LogUniform,
    SpaceError,
    Uniform,
    factorial_points,
    grid_points,
    parse_dimension,
    parse_path,
    random_points,
    set_path,
)


def test_a_path_splits_into_fields_and_indices():
    assert parse_path("regularizers[0].strength") == ["regularizers", 0, "strength"]
    assert parse_path("model.hidden[1]") == ["model", "hidden", 1]


@pytest.mark.parametrize("bad", ["", "a..b", "[0]", "a.", "a[x]", "a b", "a;drop", "a[-1]"])
def test_a_malformed_path_is_refused_with_its_field(bad):
    with pytest.raises(SpaceError) as err:
        parse_path(bad)
    assert err.value.field.startswith("space.")


def test_set_path_copies_and_creates_omitted_sections_but_not_list_entries():
    base = {"regularizers": [{"name": "l2", "strength": 0.1}]}
    out = set_path(base, "regularizers[0].strength", 0.5)
    assert out["regularizers"][0]["strength"] == 0.5 and base["regularizers"][0]["strength"] == 0.1
    assert set_path(base, "train.lr", 0.2)["train"] == {"lr": 0.2}
    with pytest.raises(SpaceError, match="no index 3"):
        set_path(base, "regularizers[3].p", 0.5)


def test_dimensions_parse_from_json_and_refuse_bad_bounds():
    assert parse_dimension("x", [1, 2]) == Choice((1, 2))
    assert parse_dimension("x", {"uniform": [0, 1]}) == Uniform(0.0, 1.0)
    assert parse_dimension("x", {"log_uniform": [1e-5, 1e-1]}) == LogUniform(1e-5, 1e-1)
    assert parse_dimension("x", {"int_uniform": [2, 8]}) == IntUniform(2, 8)
    for bad in ({"log_uniform": [0, 1]}, {"uniform": [1, 1]}, {"int_uniform": [0.5, 2]},
                {"normal": [0, 1]}, [], {"uniform": [0, float("inf")]}):  # fmt: skip
        with pytest.raises(SpaceError):
            parse_dimension("x", bad)


def test_a_grid_is_every_combination_in_path_order():
    points = grid_points({"a": Choice((1, 2)), "b": Choice(("x", "y", "z"))})
    assert len(points) == 6
    assert points[0] == {"a": 1, "b": "x"} and points[1] == {"a": 1, "b": "y"}
    with pytest.raises(SpaceError, match="grid needs a list"):
        grid_points({"a": Uniform(0, 1)})


def test_random_search_respects_bounds_and_log_scale():
    space = {
        "s": LogUniform(1e-5, 1e-1),
        "u": Uniform(-1.0, 1.0),
        "k": IntUniform(2, 4),
        "c": Choice((0.0, 0.5)),
    }
    points = random_points(space, 2000, seed=3)
    s = [p["s"] for p in points]
    assert all(1e-5 <= v <= 1e-1 for v in s)
    assert all(-1 <= p["u"] <= 1 for p in points)
    assert {p["k"] for p in points} == {2, 3, 4}
    assert {p["c"] for p in points} == {0.0, 0.5}
    # log scale: each of the four decades gets about a quarter of the draws (a uniform draw
    # would put 90% in the top decade)
    decades = [sum(1 for v in s if 10**e <= v < 10 ** (e + 1)) for e in range(-5, -1)]
    assert all(400 <= d <= 600 for d in decades), decades
    logs = [math.log10(v) for v in s]
    assert sum(logs) / len(logs) == pytest.approx(-3.0, abs=0.1)


def test_random_search_is_reproducible_from_its_seed():
    space = {"s": LogUniform(1e-5, 1e-1)}
    assert random_points(space, 5, seed=1) == random_points(space, 5, seed=1)
    assert random_points(space, 5, seed=1) != random_points(space, 5, seed=2)


def test_factorial_points_are_all_on_off_combinations():
    points = factorial_points(["dropout", "l2"])
    assert points == [
        {"dropout": False, "l2": False},
        {"dropout": False, "l2": True},
        {"dropout": True, "l2": False},
        {"dropout": True, "l2": True},
    ]
    assert len(factorial_points(["a", "b", "c"])) == 8
