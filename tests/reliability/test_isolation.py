"""Each job in a child process (``REGLAB_WORKER_ISOLATION=process``): a job out of memory or
killed fails alone, with the reason, and is not retried; the next job on the same worker
succeeds; a cancel stops a job within seconds at any stage, even one deep in data generation."""

from __future__ import annotations

import signal
import threading
import time
from multiprocessing import forkserver

import psutil
import pytest

from service.db.migrate import upgrade_to_head
from service.db.models import Experiment
from tests.worker.helpers import add_experiment, make_ctx, tiny_spec
from worker import child
from worker.tasks import run_job

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

#: 64 members of mlp [7000, 7000] with adam: ~12.5 GB for one layer's weights alone
BOMB = {
    **tiny_spec(),
    "model": {"name": "mlp", "hidden": [7000, 7000], "activation": "relu", "batch_norm": False},
    "ensemble": {"members": 64},
}
BOMB["train"] = {**BOMB["train"], "optimizer": "adam", "batch_size": 1_000_000}


def slow_data_spec() -> dict:
    """Pretraining on 30,000 generated 2,000-sample signals: ~20 s in the generator before the
    first training step, where no cancel check of the training loop runs."""
    spec = tiny_spec(epochs=2)
    spec["pretrain"] = {
        "source": {"name": "mnist1d", "n_train": 30000, "n_val": 50, "n_test": 50},
        "generator": {"padding": [36, 2000]},
    }
    return spec


@pytest.fixture
def ctx(tmp_path, cache_dir):
    url = f"sqlite:///{tmp_path / 'worker.db'}"
    upgrade_to_head(url)
    ctx = make_ctx(
        url, tmp_path, cache_dir, "w1", worker_isolation="process",
        job_memory_limit_bytes=3 * 10**9, cancel_grace_seconds=2.0,
    )  # fmt: skip
    child.warm()
    yield ctx
    ctx.engine.dispose()


def _row(ctx, eid) -> Experiment:
    with ctx.sessions() as s:
        return s.get(Experiment, eid)


def _in_thread(ctx, eid) -> dict:
    out: dict = {}

    def go() -> None:
        out["result"] = run_job(eid, ctx)
        out["at"] = time.monotonic()

    out["thread"] = threading.Thread(target=go, daemon=True)
    out["thread"].start()
    return out


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _job_processes() -> list[psutil.Process]:
    server = forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
    return psutil.Process(server).children() if server else []


def test_a_job_runs_in_a_child_process_and_succeeds(ctx):
    eid = add_experiment(ctx.sessions, tiny_spec(epochs=2))
    t0 = time.monotonic()
    assert run_job(eid, ctx) == "succeeded"
    elapsed = time.monotonic() - t0
    row = _row(ctx, eid)
    assert row.status == "succeeded" and row.summary["epochs_run"] == 2
    assert row.lease_owner is None and elapsed < 60
    assert _job_processes() == []  # the child is gone


def test_a_job_out_of_memory_fails_alone_and_the_next_job_succeeds(ctx):
    bomb = add_experiment(ctx.sessions, BOMB)
    assert run_job(bomb, ctx) == "failed"
    row = _row(ctx, bomb)
    assert row.attempts == 1 and row.lease_owner is None
    assert "memory" in row.error.lower(), row.error
    nxt = add_experiment(ctx.sessions, tiny_spec(epochs=2))
    assert run_job(nxt, ctx) == "succeeded"


def test_a_job_killed_like_the_oom_killer_does_fails_alone_with_the_reason(ctx):
    eid = add_experiment(ctx.sessions, tiny_spec(epochs=200, batch_size=10))
    job = _in_thread(ctx, eid)
    _wait(lambda: (_row(ctx, eid).last_epoch or 0) >= 1, 60, "the first epoch")
    (proc,) = _job_processes()
    proc.send_signal(signal.SIGKILL)
    job["thread"].join(30)
    assert job["result"] == "failed"
    row = _row(ctx, eid)
    assert "killed by SIGKILL" in row.error and "out-of-memory" in row.error
    assert row.attempts == 1 and row.status == "failed"
    nxt = add_experiment(ctx.sessions, tiny_spec(epochs=2))
    assert run_job(nxt, ctx) == "succeeded"


def test_a_cancel_during_data_generation_ends_the_run_within_seconds(ctx):
    eid = add_experiment(ctx.sessions, slow_data_spec())
    job = _in_thread(ctx, eid)
    _wait(lambda: _row(ctx, eid).status == "running", 30, "the claim")
    time.sleep(3.0)  # in the generator by now
    assert _row(ctx, eid).last_epoch in (None, 0)
    with ctx.sessions.begin() as s:
        s.get(Experiment, eid).cancel_requested = True
    asked = time.monotonic()
    job["thread"].join(30)
    took = job["at"] - asked
    row = _row(ctx, eid)
    assert job["result"] == "cancelled" and row.status == "cancelled"
    assert row.lease_owner is None and row.lease_expires_at is None
    assert took < 5.0, f"the cancel took {took:.1f} s"
    assert _job_processes() == []
