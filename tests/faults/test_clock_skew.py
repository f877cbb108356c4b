"""Scenario: two workers whose wall clocks are 10 minutes off, one behind and one ahead (the
``REGLAB_FAULT_CLOCK_OFFSET_S`` hook, in their processes only; the API, the reconciler and
PostgreSQL keep the true time).

With lease times taken from each worker's clock, the slow worker's leases were already 10
minutes expired when written: the reconciler requeued its run while it ran, and the fast worker
(to which every lease looks 10 minutes older) took it over; the fast worker's own leases outlived
it by 10 minutes, so its run stayed stuck after it died. Lease times come from the database's
clock now (``service.db.clock``), and so do the workers' liveness rows."""

from __future__ import annotations

import re
import time

import pytest

from service.db import workers
from service.queue import enqueue, make_celery
from service.settings import Settings
from tests.faults.conftest import PrivateRedis, tiny_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

OFFSET_S = 600
EPOCHS = 40
LONG_EPOCHS = 1000


def _owner_pid(row: dict) -> str | None:
    owner = row["lease_owner"] or ""
    return owner.split(":")[1] if owner.count(":") >= 2 else None


def test_a_worker_10_minutes_off_neither_steals_a_live_lease_nor_loses_its_own(
    stack_factory, new_postgres_database, private_redis: PrivateRedis, figures: dict
):
    stack = stack_factory(new_postgres_database(), private_redis.url)  # 4 s leases
    api = stack.start_api()
    slow = stack.start_worker(hooks={"REGLAB_FAULT_CLOCK_OFFSET_S": str(-OFFSET_S)})
    slow_pid = str(slow.popen.pid)

    # 1. the slow worker runs a; the fast worker is started meanwhile and handed a second
    #    message for it: to the fast worker's clock a's lease looks 10 minutes stale
    # a runs until it is cancelled (step 3), so that it spans both workers' lives
    a = api.submit(tiny_spec(epochs=LONG_EPOCHS, batch_size=10, name="slow-clock"))["id"]
    stack.wait_until(lambda: _owner_pid(stack.experiments()[a]) == slow_pid, 60, "a running")
    fast = stack.start_worker(hooks={"REGLAB_FAULT_CLOCK_OFFSET_S": str(OFFSET_S)})
    fast_pid = str(fast.popen.pid)
    assert enqueue(make_celery(Settings(broker_url=private_redis.url)), a, "cpu")
    stack.wait_until(lambda: f"experiment {a} not claimed" in fast.output(), 60,
                     "the fast worker to be handed a's duplicate message")  # fmt: skip
    with stack.sessions() as session:
        live = workers.consumers(session)  # both workers' liveness rows, by the database's clock

    # 2. while the slow worker is still busy with a, the fast worker runs b and is SIGKILLed
    #    mid-run: b's lease must end one lease (by the database's clock) after, not 10 minutes
    b = api.submit(tiny_spec(epochs=EPOCHS, batch_size=10, name="fast-clock"))["id"]
    stack.wait_until(
        lambda: _owner_pid(row := stack.experiments()[b]) == fast_pid
        and (row["last_epoch"] or 0) >= 2,
        60, "b running on the fast worker",
    )  # fmt: skip
    a_still_running = _owner_pid(stack.experiments()[a]) == slow_pid
    fast.kill()
    killed = time.monotonic()
    stack.wait_until(lambda: stack.experiments()[b]["lease_owner"] is None
                     or _owner_pid(stack.experiments()[b]) != fast_pid, 60,
                     "b's lease to end after its worker died")  # fmt: skip
    lease_ended_s = time.monotonic() - killed
    # 3. a is cancelled: the slow worker then finishes b (from b's last checkpoint)
    api.cancel(a)
    rows = stack.wait_terminal([a, b], timeout=150)
    row_a, row_b = rows[a], rows[b]

    audit = stack.audit()
    serve_log = stack.serve.output() if stack.serve else ""
    requeued = set(
        re.findall(r"[0-9a-f]{32}", " ".join(re.findall(r"requeued \[.*?\]", serve_log)))
    )
    figures.update(
        experiments=2,
        kills=1,
        clock_offsets_s=[-OFFSET_S, OFFSET_S],
        live_consumers_seen=dict(live),
        slow_worker_run_status=row_a["status"],
        slow_worker_run_epochs=row_a["last_epoch"],
        slow_worker_run_claims=len(audit.claims(a)),
        slow_worker_run_requeued_while_running=a in requeued,
        duplicates_refused_by_fast_worker=fast.output().count(f"experiment {a} not claimed"),
        fast_worker_killed_lease_ended_s=round(lease_ended_s, 1),
        lease_s=stack.lease_s,
        fast_worker_run_status=row_b["status"],
        fast_worker_run_attempts=row_b["attempts"],
        lost=int(row_a["status"] != "cancelled") + int(row_b["status"] != "succeeded"),
        duplicated_metric_points=stack.duplicated_metric_points(),
        lease_violations=len(audit.violations()),
    )

    assert a_still_running, "a ended before b ran: the test did not hold both leases at once"
    # the slow worker kept its run: one claim, never requeued, not taken by the fast worker
    assert row_a["status"] == "cancelled" and row_a["attempts"] == 1, row_a
    assert len(audit.claims(a)) == 1 and audit.writers(a) == [audit.claims(a)[0]["writer"]]
    assert a not in requeued
    # both workers were counted live, whatever their clocks say
    assert live["cpu"] == 2, live
    # the fast worker's lease ended one lease after it died (plus a reconciler pass or two)
    assert lease_ended_s < stack.lease_s + 4, lease_ended_s
    assert row_b["status"] == "succeeded" and row_b["attempts"] == 2, row_b
    assert [c["owner_after"].split(":")[1] for c in audit.claims(b)] == [fast_pid, slow_pid]
    assert figures["duplicated_metric_points"] == 0
    assert audit.violations() == []
