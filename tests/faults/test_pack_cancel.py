"""A pack's members cancelled one by one on a real ``reglab worker`` (PostgreSQL, a private
Redis), the pack in a child process of the worker (``worker.child``): one member's cancel stops
it alone inside the pack while the others train on; when every member is cancelled the pack's
process is stopped (killed after the grace if it does not stop) and the worker takes the next
job."""

from __future__ import annotations

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
    # the victim stops (its row is settled when the pack ends) and the others train on
    stack.wait_until(
        lambda: min((now := epochs_now())[i] for i in rest) >= now[victim] + 5, 60,
        "the others five epochs past the cancelled member",
    )  # fmt: skip
    at_cancel = epochs_now()
    rows = stack.experiments()
    assert all(rows[i]["status"] == "running" for i in ids), rows
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
    assert stack.wait_terminal([after], timeout=60)[after]["status"] == "succeeded"
    assert worker.popen.poll() is None
    [(worker_pid, child_pid)] = pack_pids(api, victim)
    assert child_pid != worker_pid
    figures.update(cancelled_at=at_cancel, all_stopped_s=round(stopped_s, 2))
