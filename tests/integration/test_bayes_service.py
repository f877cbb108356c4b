"""The Bayesian methods through the service: submitted beside l2 + dropout, run by a real
worker on PostgreSQL + Redis, their predictive in the summary and the metric series; a bad
spec is a 422 naming the field; GET /v1/regularizers lists them."""

from __future__ import annotations

import httpx
import pytest

from reglab.client import InvalidSpecError
from tests.integration.conftest import Stack
from tests.integration.test_worker import ended, spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

BAYES = [
    {"name": "sgld", "burn_in": 2, "thin": 2, "samples": 5},
    {"name": "bayes_by_backprop", "samples": 5},
    {"name": "laplace", "hessian": "diag"},
]


def test_each_method_runs_through_the_service_beside_l2_and_dropout(workers: Stack):
    workers.start_worker()
    regs = [{"name": "l2", "strength": 5e-4}, {"name": "dropout", "p": 0.2}]
    submitted = [workers.api.submit(spec(epochs=4, regularizers=[*regs, b])) for b in BAYES]
    for b, exp in zip(BAYES, submitted, strict=True):
        done = workers.wait(exp["id"], ended)
        assert done["status"] == "succeeded", done
        metrics = done["summary"]["metrics"]
        name = b["name"]
        for key in ("test_loss", "test_acc", "ece"):
            assert f"{name}_{key}" in metrics and key in metrics
        if name != "laplace":  # laplace is fitted once, after training
            series = workers.api.metrics(exp["id"], keys=[f"{name}_ece"])
            assert series[f"{name}_ece"]


def test_a_bad_bayesian_spec_is_a_422_naming_the_field(stack: Stack):
    bad = spec(regularizers=[{"name": "sgld"}], train={"optimizer": "adam", "lr": 0.01})
    with pytest.raises(InvalidSpecError) as err:
        stack.api.submit(bad)
    assert err.value.status == 422
    assert "regularizers[0]" in [e["loc"] for e in err.value.errors]


def test_get_regularizers_lists_them(stack: Stack):
    items = httpx.get(f"{stack.api.base_url}/v1/regularizers").json()["items"]
    names = [e["name"] for e in items]
    assert {"sgld", "bayes_by_backprop", "laplace"} <= set(names)
