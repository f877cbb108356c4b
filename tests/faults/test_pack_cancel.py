"""A pack's members cancelled one by one on a real ``reglab worker`` (PostgreSQL, a private
Redis), the pack in a child process of the worker (``worker.child``): one member's cancel stops
it alone inside the pack while the others train on, and its row is settled then (``cancelled``,
its reason, its lease cleared), not when the pack ends; when every member is cancelled the
pack's process is stopped (killed after the grace if it does not stop) and the worker takes the
next job."""

from __future__ import annotations

import signal
import time

import pytest

from tests.faults.conftest import PrivateRedis, tiny_spec
from tests.faults.test_pack_child import ids_of, pack_pids, sweep

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]


def test_a_packs_members_are_cancelled_one_by_one_and_the_last_cancel_ends_its_process(
    stack_factory, new_postgres_database, private_redis: PrivateRedis, figures: dict,
):  # fmt: skip
    stack = stack_factory(new_postgres_database(), private_redis.url)
    api = stack.start_api()
    worker = stack.start_worker()
    epochs = 100
    # 200 steps an epoch (0.1-0.5 s for a pack of four): the pack is cancelled long before its end
    ids = ids_of(api.create_sweep(sweep("cancels", epochs=epochs, n_train=1000, batch_size=5)))
    victim, rest = ids[0], ids[1:]

    def epochs_now() -> dict[str, int]:
        rows = stack.experiments()
        return {i: rows[i]["last_epoch"] or 0 for i in ids}

    stack.wait_until(lambda: min(epochs_now().values()) >= 2, 120, "every member at epoch 2")
    api.cancel(victim)
    # the victim's row is settled as soon as it stops inside the pack, the others train on
    t_cancel = time.monotonic()
    settled = stack.wait_until(
        lambda: (r := stack.experiments())[victim]["status"] != "running" and r, 30,
        "the cancelled member's row settled",
    )  # fmt: skip
    settled_s = time.monotonic() - t_cancel
    assert settled[victim]["status"] == "cancelled", settled[victim]
    assert settled[victim]["lease_owner"] is None, settled[victim]
    assert "cancelled during epoch" in settled[victim]["summary"]["reason"], settled[victim]
    assert settled[victim]["summary"]["epochs_run"] == settled[victim]["last_epoch"]
    # ... while the pack still runs: none of the others has finished
    assert all(settled[i]["status"] == "running" for i in rest), settled
    assert all(settled[i]["last_epoch"] < epochs for i in rest), settled
    stack.wait_until(
        lambda: min((now := epochs_now())[i] for i in rest) >= now[victim] + 5, 60,
        "the others five epochs past the cancelled member",
    )  # fmt: skip
    at_cancel = epochs_now()
    rows = stack.experiments()
    assert all(rows[i]["status"] == "running" for i in rest), rows
    # settled once: its lease stays cleared (its keeper stopped), its row as it was
    assert rows[victim]["status"] == "cancelled" and rows[victim]["lease_owner"] is None, rows
    assert rows[victim]["last_epoch"] == settled[victim]["last_epoch"], rows
    t0 = time.monotonic()
    for eid in rest:
        api.cancel(eid)
    rows = stack.wait_terminal(ids, timeout=60)
    stopped_s = time.monotonic() - t0
    assert all(rows[i]["status"] == "cancelled" for i in ids), rows
    assert all(rows[i]["last_epoch"] < epochs and rows[i]["attempts"] == 1 for i in ids), rows
    assert rows[victim]["last_epoch"] == at_cancel[victim], (rows, at_cancel)  # it had stopped
    assert stopped_s < 20, stopped_s
    # the worker takes the next job
    after = api.submit(tiny_spec(seed=5, epochs=2, name="after"))["id"]
    rows = stack.wait_terminal([*ids, after], timeout=60)
    figures.update(
        experiments=len(rows),
        kills=sum(w.popen.returncode == -signal.SIGKILL for w in stack.workers),
        restarts=len(stack.workers) - 1,
        lost=sum(rows[i]["status"] != "cancelled" for i in ids)
        + (rows[after]["status"] != "succeeded"),
        duplicated_metric_points=stack.duplicated_metric_points(),
        cancelled_at=[at_cancel[i] for i in ids],
        victim_settled_s=round(settled_s, 2),
        all_stopped_s=round(stopped_s, 2),
        attempts=[rows[i]["attempts"] for i in ids],
        next_job=rows[after]["status"],
        worker_replaced=worker.popen.poll() is not None,
        lease_violations=len(stack.audit().violations()),
    )
    assert rows[after]["status"] == "succeeded"
    assert worker.popen.poll() is None
    [(worker_pid, child_pid)] = pack_pids(api, victim)
    assert child_pid != worker_pid
