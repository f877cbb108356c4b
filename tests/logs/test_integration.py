"""Run logs, provenance and system metrics through the real service: ``reglab serve`` on
PostgreSQL + Redis and a ``reglab worker`` subprocess (tests/integration/conftest.py)."""

from __future__ import annotations

import importlib.metadata
import platform
import threading
import time
from datetime import datetime
from typing import Any

import numpy as np
import pytest
import sklearn
import torch

from regcore.data import build_dataset
from regcore.provenance import arrays_sha256
from regcore.spec import parse_spec
from reglab.client import RegLabClient
from tests.integration.conftest import Stack, redis_broker, stack  # noqa: F401
from tests.services import new_postgres_database, postgres_admin_url  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

SPEC: dict[str, Any] = {
    "name": "logs-integration",
    "seed": 3,
    "data": {"name": "mnist1d", "n_train": 300, "n_val": 100, "n_test": 100},
    "model": {"name": "mlp", "hidden": [32]},
    "train": {"lr": 0.05, "batch_size": 50, "epochs": 3, "device": "cpu"},
}


def ended(exp: dict) -> bool:
    return exp["status"] in ("succeeded", "failed", "cancelled")


class Follower(threading.Thread):
    """``client.follow_logs`` on a client of its own; records when the stream ended."""

    def __init__(self, base_url: str, experiment_id: str):
        super().__init__(daemon=True)
        self.base_url, self.id = base_url, experiment_id
        self.lines: list[dict[str, Any]] = []
        self.ended_at: float | None = None

    def run(self) -> None:
        with RegLabClient(self.base_url) as client:
            self.lines.extend(client.follow_logs(self.id))
        self.ended_at = time.time()


@pytest.fixture(scope="module")
def finished(stack: Stack):  # noqa: F811
    """One run, followed from the moment it was queued to its end."""
    exp = stack.api.submit(SPEC)
    follower = Follower(stack.api.base_url, exp["id"])
    follower.start()
    worker = stack.start_worker()
    done = stack.wait(exp["id"], ended)
    follower.join(timeout=60)
    stack.stop_workers()
    return done, follower, worker


def test_the_logs_come_in_order_and_follow_ends_when_the_run_ends(stack, finished):  # noqa: F811
    done, follower, _ = finished
    assert done["status"] == "succeeded", done
    assert not follower.is_alive() and follower.ended_at is not None
    finished_at = datetime.fromisoformat(done["finished_at"]).timestamp()
    assert 0 <= follower.ended_at - finished_at < 15  # ended with the run, not on a timeout
    page = stack.api.logs(done["id"])
    lines = page["items"]
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
    assert page["last_seq"] == len(lines) and page["status"] == "succeeded"
    assert follower.lines == lines  # the stream delivered every stored line, once, in order
    messages = [line["message"] for line in lines]
    assert "attempt 1 on" in messages[0]  # the worker's claim comes first
    assert messages[-1] == f"experiment {done['id']} succeeded"  # its outcome last
    times = [line["time"] for line in lines]
    assert times == sorted(times) and {line["attempt"] for line in lines} == {1}


def test_the_run_records_what_ran(stack, finished, cache_dir):  # noqa: F811
    done, _, worker = finished
    env = done["environment"]
    assert env is not None and "environment" not in done["summary"]
    assert env["torch"] == torch.__version__ and env["numpy"] == np.__version__
    assert env["scikit-learn"] == sklearn.__version__
    assert env["mnist1d"] == importlib.metadata.version("mnist1d")
    assert env["reglab"] == importlib.metadata.version("reglab")
    assert env["python"] == platform.python_version()
    assert env["device"] == "cpu" and env["device_name"] and env["cuda"] is None
    assert env["threads"] == 1  # reglab worker --threads 1
    assert env["worker_id"] and env["worker_id"].split(":")[0] == env["host"]
    spec = parse_spec(SPEC)
    assert env["spec_hash"] == spec.spec_hash()
    # the sha256 of exactly the arrays it trained on, as built here from the same spec and seed
    expected = arrays_sha256(build_dataset(spec.data, spec.seed, cache_dir))
    assert env["dataset"] == {
        "name": "mnist1d", "id": "mnist1d", "arrays_sha256": expected,
        "sha256": expected, "sha256_of": "arrays",
    }  # fmt: skip


def test_system_metrics_are_ordinary_series(stack, finished):  # noqa: F811
    done, _, _ = finished
    keys = ["sys_cpu_percent", "sys_rss_mb", "sys_epoch_s"]
    series = stack.api.metrics(done["id"], keys=keys)
    for key in keys:
        assert [p["step"] for p in series[key]] == [1, 2, 3], key
    assert all(p["value"] > 10 for p in series["sys_rss_mb"])  # MiB of a process with torch
    assert all(0 < p["value"] < 60 for p in series["sys_epoch_s"])
    assert all(p["value"] >= 0 for p in series["sys_cpu_percent"])


def test_a_cancelled_run_keeps_only_its_newest_lines_and_follow_ends(stack):  # noqa: F811
    stack.env["REGLAB_MAX_LOG_LINES"] = "2"
    try:
        stack.start_worker()
    finally:
        del stack.env["REGLAB_MAX_LOG_LINES"]
    try:
        long = {**SPEC, "train": {**SPEC["train"], "epochs": 500, "batch_size": 10}}
        exp = stack.api.submit(long)
        stack.wait(exp["id"], lambda e: e["status"] == "running" and e["progress"]["epoch"] >= 1)
        follower = Follower(stack.api.base_url, exp["id"])
        follower.start()
        stack.api.cancel(exp["id"])
        done = stack.wait(exp["id"], ended)
        follower.join(timeout=60)
    finally:
        stack.stop_workers()
    assert done["status"] == "cancelled"
    assert not follower.is_alive()
    page = stack.api.logs(exp["id"])
    last = page["last_seq"]
    assert last >= 3  # claim, the cancel, the outcome at least: some fell out of the window
    assert [line["seq"] for line in page["items"]] == [last - 1, last]
    # the worker's own last word on the run (its wording depends on which process saw the
    # cancel first: "cancelled", or the job stopped and the row handed back, then ended cancelled)
    final = page["items"][-1]
    assert final["logger"] == "worker.tasks" and final["message"].startswith(
        f"experiment {exp['id']}"
    )
