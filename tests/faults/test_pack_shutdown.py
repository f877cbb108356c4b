"""A worker asked to stop (SIGTERM) in the middle of a pack that runs in its child process
(``worker.child``; PostgreSQL, a private Redis, real ``reglab worker`` processes): every member
must stop, so the pack's process is stopped, every member goes back to the queue, and another
worker resumes the pack from the members' checkpoints."""

from __future__ import annotations

import signal
import time

import pytest

from tests.faults.conftest import PrivateRedis
from tests.faults.test_pack_child import ids_of, sweep
from tests.faults.test_pack_kill import resumed_from

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(400)]


def test_a_workers_shutdown_stops_its_packs_process_and_the_members_resume_elsewhere(
    stack_factory, new_postgres_database, private_redis: PrivateRedis, figures: dict,
):  # fmt: skip
    """SIGTERM to the worker mid-pack: every member must stop, so the worker stops the pack's
    process, gives each member back to the queue (its attempt uncounted) and exits; another
    worker resumes the pack from the members' checkpoints."""
    stack = stack_factory(new_postgres_database(), private_redis.url)
    api = stack.start_api()
    worker = stack.start_worker()
    epochs = 100
    ids = ids_of(api.create_sweep(sweep("shutdown", epochs=epochs, n_train=1000, batch_size=5)))

    def checkpointed() -> bool:
        done = stack.query(
            "SELECT DISTINCT experiment_id FROM checkpoints WHERE kind = 'last' AND epoch >= 5"
        )
        return {r["experiment_id"] for r in done} >= set(ids)

    stack.wait_until(checkpointed, 120, "every member's checkpoint of epoch 5")
    t0 = time.monotonic()
    worker.stop(timeout=60)  # SIGTERM to its process group: the pack's process ignores it
    stopped_s = time.monotonic() - t0
    assert worker.popen.returncode == 0, worker.tail()
    rows = stack.experiments()
    assert all(rows[i]["status"] == "queued" and rows[i]["attempts"] == 0 for i in ids), rows
    assert all(rows[i]["last_epoch"] < epochs for i in ids), rows
    out = worker.output()
    # the worker stopped the pack's process (the fork server it came from ignores the SIGTERM:
    # in a CI run before it did, the fork server died of it, the worker read the pack's
    # process as ended and gave the members back without this line) and gave each member back
    assert "stopping its job (shutdown)" in out, out[-3000:]
    for eid in ids:
        said = f"experiment {eid} back in the queue: the worker is shutting down"
        assert said in out, out[-3000:]
    at_stop = [rows[i]["last_epoch"] for i in ids]
    given_back = [
        f"experiment {i} back in the queue: the worker is shutting down" in out for i in ids
    ]
    second = stack.start_worker()
    rows = stack.wait_terminal(ids, timeout=240)
    duplicated = stack.duplicated_metric_points()
    starts = [resumed_from(api.logs(i)["items"], i) for i in ids]
    figures.update(
        experiments=len(stack.experiments()),
        kills=sum(w.popen.returncode == -signal.SIGKILL for w in stack.workers),
        restarts=len(stack.workers) - 1,
        lost=sum(rows[i]["status"] != "succeeded" for i in ids),
        duplicated_metric_points=duplicated,
        worker_stopped_s=round(stopped_s, 2),
        worker_exit_code=worker.popen.returncode,
        epochs_at_stop=at_stop,
        members_given_back=sum(given_back),
        attempts=[rows[i]["attempts"] for i in ids],
        resumed_from=[min(s, default=None) for s in starts],
        lease_violations=len(stack.audit().violations()),
    )
    assert all(rows[i]["status"] == "succeeded" and rows[i]["attempts"] == 1 for i in ids), rows
    assert duplicated == 0
    for eid in ids:
        said = [x["message"] for x in api.logs(eid)["items"]]
        assert any(f"experiment {eid}: resuming from epoch" in m for m in said), said[-20:]
        assert {k: [s for s, _ in v] for k, v in stack.metric_series(eid).items()} == {
            k: list(range(1, epochs + 1)) for k in stack.metric_series(eid)
        }
    assert "pack of 4" in second.output()
