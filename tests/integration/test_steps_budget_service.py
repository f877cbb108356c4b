"""Issue 14 through the real service: a train.steps budget (points at step numbers, unique
metric rows), entropy_sgd beside l2 and dropout, geometric-mean dropout and a parameterized
attack measure, on PostgreSQL + Redis and a real ``reglab worker``."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]


def test_a_steps_budget_spec_runs_through_the_service_with_points_at_step_numbers(
    workers: Stack,
):
    spec = {
        "name": "issue14",
        "seed": 0,
        "data": {"name": "mnist1d", "n_train": 200, "n_val": 50, "n_test": 100},
        "model": {"name": "mlp", "hidden": [32]},
        "train": {"lr": 0.5, "batch_size": 50, "steps": 7, "eval_every": 3, "device": "cpu"},
        "regularizers": [
            {"name": "l2", "strength": 0.0005},
            {"name": "dropout", "p": 0.2},
            {"name": "entropy_sgd", "inner_steps": 3, "gamma": 0.1},
        ],
        "measure": [{"name": "pgd_acc", "eps": 0.2, "steps": 3, "key": "pgd_acc_02"}],
        "mc_dropout": {"passes": 4, "rule": "geometric"},
    }
    workers.start_worker()
    exp = workers.api.submit(spec)
    done = workers.wait(exp["id"], lambda e: e["status"] in ("succeeded", "failed"))
    assert done["status"] == "succeeded", done
    assert done["summary"]["steps_run"] == 7 and done["progress"]["epochs"] == 7
    assert 0.0 <= done["summary"]["metrics"]["gm_test_acc"] <= 1.0
    series = workers.api.metrics(exp["id"], keys=["val_loss", "pgd_acc_02"])
    assert [p["step"] for p in series["val_loss"]] == [3, 6, 7]
    assert [p["step"] for p in series["pgd_acc_02"]] == [3, 6, 7]
    last = next(c for c in workers.api.checkpoints(exp["id"]) if c["kind"] == "last")
    assert last["epoch"] == 7
