"""The Bayesian methods in the engine: not batched (why_not_batched names them), and a run
cancelled and resumed ends with the same posterior predictive as an uninterrupted one."""

from __future__ import annotations

import pytest

from regcore.ensemble.batched import why_not_batched
from regcore.experiment import run as run_experiment
from tests.regcore.runs import make_spec
from tests.regcore.test_resume import CancelAfter

BAYES = [
    {"name": "sgld", "burn_in": 2, "thin": 3, "samples": 5},
    {"name": "bayes_by_backprop", "samples": 5},
    {"name": "laplace"},
]


@pytest.mark.parametrize("reg", BAYES, ids=[r["name"] for r in BAYES])
def test_the_batched_engine_names_them_as_not_batched(reg):
    spec = make_spec(regularizers=[reg], ensemble={"members": 2})
    assert why_not_batched(spec) == f"regularizer {reg['name']} is not batched"


@pytest.mark.parametrize("reg", BAYES, ids=[r["name"] for r in BAYES])
def test_a_resumed_run_ends_with_the_same_predictive(reg, tmp_path, cache_dir):
    spec = make_spec(regularizers=[{"name": "dropout", "p": 0.2}, reg])
    kw = {"cache_dir": cache_dir, "threads": 1}
    whole = run_experiment(spec, workdir=tmp_path / "whole", **kw)
    cut = run_experiment(spec, workdir=tmp_path / "cut", reporter=CancelAfter(3), **kw)
    assert cut.status == "cancelled"
    resumed = run_experiment(spec, workdir=tmp_path / "cut", resume=True, **kw)
    name = reg["name"]
    assert f"{name}_ece" in whole.metrics
    assert resumed.metrics == whole.metrics
