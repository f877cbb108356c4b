"""The embedded default: ``reglab serve`` with nothing configured (SQLite under ./var, the
filesystem broker, an embedded worker), driven through the Python client, across restarts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from reglab.client import RegLabClient
from tests.integration.conftest import free_port, serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def tiny(epochs: int, batch_size: int = 10) -> dict:
    return {
        "name": "embedded",
        "data": {"name": "mnist1d", "n_train": 300, "n_val": 100, "n_test": 100},
        "model": {"name": "mlp", "hidden": [32]},
        "train": {"lr": 0.05, "batch_size": batch_size, "epochs": epochs, "device": "cpu"},
    }


def test_the_embedded_service_runs_work_queued_before_a_restart_and_resumes_a_stopped_run(
    tmp_path: Path,
):
    port = free_port()
    api = RegLabClient(f"http://127.0.0.1:{port}")

    # queued while nothing consumes: the message waits in ./var/broker across the restart
    server = serve(tmp_path, port, "--no-worker")
    waiting = api.submit(tiny(epochs=3))
    server.stop()
    assert list((tmp_path / "var" / "broker" / "queue").iterdir()), "the message is on disk"
    assert (tmp_path / "var" / "reglab.db").exists()

    server = serve(tmp_path, port)
    done = api.wait(waiting["id"], timeout=60, poll=0.3)
    assert done["status"] == "succeeded", done

    # stopped mid-run: the worker puts the run back in the queue; the next start resumes it
    long = api.submit(tiny(epochs=100, batch_size=1))  # ~0.1 s epochs: ~10 s in all
    deadline = time.monotonic() + 60
    while api.get(long["id"])["progress"]["epoch"] < 3:
        assert time.monotonic() < deadline, server.tail()
        time.sleep(0.2)
    server.stop()
    paused = api_get_offline(tmp_path, long["id"])
    assert paused["status"] == "queued" and 3 <= paused["last_epoch"] < 100

    server = serve(tmp_path, port)
    try:
        done = api.wait(long["id"], timeout=90, poll=0.3)
        assert done["status"] == "succeeded", (done, server.tail())
        assert done["attempts"] == 1, "a clean shutdown does not use up an attempt"
        steps = [p["step"] for p in api.metrics(long["id"], keys=["val_loss"])["val_loss"]]
        assert steps == list(range(1, 101))
        assert f"{long['id']}: resuming from epoch" in server.output()
        assert (tmp_path / "var" / "artifacts" / long["id"] / "checkpoints").is_dir()
    finally:
        server.stop()
        api.close()


def api_get_offline(cwd: Path, experiment_id: str) -> dict:
    """Read the row straight from the SQLite file while the service is down."""
    import sqlite3

    con = sqlite3.connect(cwd / "var" / "reglab.db")
    try:
        status, last_epoch = con.execute(
            "SELECT status, last_epoch FROM experiments WHERE id = ?", (experiment_id,)
        ).fetchone()
    finally:
        con.close()
    return {"status": status, "last_epoch": last_epoch}
