"""Scenario 2: a run that kills its worker every time ends ``failed`` after max_attempts, with the
reason, and is not delivered again; the restarted worker goes on with other work."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.faults.conftest import PrivateRedis, tiny_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(450)]  # 4 worker starts

MAX_ATTEMPTS = 3


def test_a_run_that_kills_its_worker_every_time_fails_after_max_attempts_and_stops_coming_back(
    stack_factory, new_postgres_database, private_redis: PrivateRedis, tmp_path: Path,
    figures: dict,
):  # fmt: skip
    stack = stack_factory(new_postgres_database(), private_redis.url, max_attempts=MAX_ATTEMPTS)
    api = stack.start_api()
    poison_file = tmp_path / "poison"
    poison = api.submit(tiny_spec(epochs=20, name="poison"))["id"]
    poison_file.write_text(poison)  # before any worker runs: every attempt dies at epoch 1
    hooks = {"REGLAB_FAULT_POISON_FILE": str(poison_file)}
    figures.update(experiments=1, max_attempts=MAX_ATTEMPTS, kills=0, restarts=0)

    # a supervisor: whenever the worker dies, start another one (systemd, Kubernetes...)
    worker = stack.start_worker(scratch="scratch", hooks=hooks)
    deadline = time.monotonic() + 200
    while stack.experiments()[poison]["status"] not in ("failed", "succeeded", "cancelled"):
        assert time.monotonic() < deadline, stack.logs()
        if worker.popen.poll() is not None:
            figures["kills"] += 1
            worker = stack.start_worker(scratch="scratch", hooks=hooks)
            figures["restarts"] += 1
        time.sleep(0.2)
    row = stack.experiments()[poison]
    claims_at_failure = len(stack.audit().claims(poison))

    # no endless redelivery: several reconciler passes later nobody claimed it again, and the
    # worker is alive and runs the next experiment
    time.sleep(3 * 1 + stack.lease_s)
    healthy = api.submit(tiny_spec(epochs=2, name="after-poison"))["id"]
    after = stack.wait_terminal([healthy], timeout=90)
    claims_later = len(stack.audit().claims(poison))
    figures.update(
        status=row["status"],
        attempts=row["attempts"],
        error=row["error"],
        claims=claims_later,
        worker_alive=worker.popen.poll() is None,
        next_experiment=after[healthy]["status"],
        lost=0 if row["status"] == "failed" else 1,
    )

    assert row["status"] == "failed"
    assert row["attempts"] == MAX_ATTEMPTS
    assert f"gave up after {MAX_ATTEMPTS} attempt(s)" in row["error"]
    assert figures["kills"] == MAX_ATTEMPTS  # every attempt took its worker down
    assert claims_at_failure == claims_later == MAX_ATTEMPTS
    assert worker.popen.poll() is None
    assert after[healthy]["status"] == "succeeded"
    assert stack.audit().violations() == []
