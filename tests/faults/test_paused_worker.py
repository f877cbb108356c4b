"""Scenario 5: a worker frozen (SIGSTOP: a long GC pause, a suspended VM) past its lease. Another
worker takes the run over; when the frozen one wakes (SIGCONT) every write it tries is refused by
the lease guard, and it stops that run."""

from __future__ import annotations

import os
import signal

import pytest

from tests.faults.conftest import PrivateRedis, tiny_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

EPOCHS = 40  # ~250 steps an epoch: long enough to outlast a worker start and a lease


def _pid(owner: str | None) -> str | None:
    return owner.split(":")[1] if owner else None


def test_a_worker_paused_past_its_lease_is_replaced_and_its_writes_are_refused_when_it_wakes(
    stack_factory, new_postgres_database, private_redis: PrivateRedis, figures: dict
):
    stack = stack_factory(new_postgres_database(), private_redis.url)
    api = stack.start_api()
    # both ready before the run starts: starting the second one later raced the run's end on a
    # loaded box; whichever takes the run is the one paused, the other is idle until then
    workers = [stack.start_worker(), stack.start_worker()]
    spec = tiny_spec(epochs=EPOCHS, n_train=2000, batch_size=8, name="paused")
    eid = api.submit(spec)["id"]
    stack.wait_until(
        lambda: stack.experiments()[eid]["last_epoch"] >= 2, 90, "the first worker's epoch 2"
    )
    owner = _pid(stack.experiments()[eid]["lease_owner"])
    first, second = sorted(workers, key=lambda w: str(w.popen.pid) != owner)
    assert str(first.popen.pid) == owner

    os.killpg(first.popen.pid, signal.SIGSTOP)
    paused_at = stack.experiments()[eid]["last_epoch"]
    stack.wait_until(
        lambda: (
            (r := stack.experiments()[eid])["status"] == "running"
            and _pid(r["lease_owner"]) == str(second.popen.pid)
            and r["last_epoch"] > paused_at
        ),
        60,
        "the second worker to take over and record an epoch",
    )
    os.killpg(first.popen.pid, signal.SIGCONT)
    first.wait_for("lease lost while", timeout=30)
    first.wait_for("'lease lost'", timeout=30)  # the task returned: it stopped that run
    done = stack.wait_terminal([eid], timeout=120)[eid]

    audit = stack.audit()
    writers = audit.writers(eid)
    violations = audit.violations()
    first_writes_after_takeover = sum(
        1
        for r in audit.rows
        if r["experiment_id"] == eid
        and _pid(r["writer"]) == str(first.popen.pid)
        and r["seq"] > audit.claims(eid)[-1]["seq"]
    )
    figures.update(
        experiments=1,
        pauses=1,
        paused_at_epoch=paused_at,
        taken_over_at_epoch=audit.claims(eid)[-1]["step"],
        writers=len(writers),
        writes_by_paused_worker_after_takeover=first_writes_after_takeover,
        lease_violations=len(violations),
        duplicated_metric_points=stack.duplicated_metric_points(),
        status=done["status"],
        attempts=done["attempts"],
        lost=0 if done["status"] == "succeeded" else 1,
    )

    assert done["status"] == "succeeded" and done["attempts"] == 2
    assert [_pid(w) for w in writers] == [str(first.popen.pid), str(second.popen.pid)]
    assert first_writes_after_takeover == 0
    assert not violations, violations
    assert figures["duplicated_metric_points"] == 0
    assert first.popen.poll() is None  # it stopped the run, not itself: it takes new work
    series = stack.metric_series(eid)
    assert {k: [s for s, _ in v] for k, v in series.items()} == {
        k: list(range(1, EPOCHS + 1)) for k in series
    }
    assert done["summary"]["epochs_run"] == EPOCHS
