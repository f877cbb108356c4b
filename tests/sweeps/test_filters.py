"""The filter and sort grammar of GET /v1/experiments."""

from __future__ import annotations

import pytest

from service.sweeps.filters import Clause, FilterError, Sort, parse_filter, parse_sort


def test_a_filter_parses_into_metric_and_field_clauses():
    assert parse_filter("test_acc>0.8 and status=succeeded") == [
        Clause("test_acc", ">", 0.8, "metric"),
        Clause("status", "=", "succeeded", "field"),
    ]
    assert parse_filter("gen_gap <= -1e-3 AND name='my run'") == [
        Clause("gen_gap", "<=", -0.001, "metric"),
        Clause("name", "=", "my run", "field"),
    ]
    assert parse_filter("") == [] and parse_filter(None) == []
    sweep = "0123456789abcdef0123456789abcdef"
    assert parse_filter(f"sweep_id={sweep}") == [Clause("sweep_id", "=", sweep, "field")]


def test_sort_takes_a_metric_or_a_field_with_an_optional_minus():
    assert parse_sort("-test_acc") == Sort("test_acc", True, "metric")
    assert parse_sort("created_at") == Sort("created_at", False, "field")
    assert parse_sort(None) is None


INJECTIONS = [
    "test_acc>0.8; DROP TABLE experiments",
    "test_acc>0.8 or 1=1",
    "status='succeeded' or '1'='1'",
    "status=succeeded' --",
    "test_acc>0.8) UNION SELECT * FROM api_keys --",
    "test_acc>'0.8'",
    "(test_acc>0.8)",
    "test_acc>0.8 and",
    "TEST_ACC>1",
    "test_acc>nan",
    "test_acc>1e999",
    "status>failed",
    "status=hacked",
    "1=1",
    "test_acc>0.8 and " * 10 + "a>1",
    "x" * 600,
]


@pytest.mark.parametrize("text", INJECTIONS)
def test_anything_outside_the_grammar_is_refused(text):
    with pytest.raises(FilterError):
        parse_filter(text)


@pytest.mark.parametrize("text", ["-", "test_acc desc", "name; drop", "-created_at,id", "sweep_id"])
def test_a_bad_sort_is_refused(text):
    with pytest.raises(FilterError):
        parse_sort(text)
