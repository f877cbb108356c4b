"""Scenario 10 (issue 16): the artifact store fills up mid-run (ENOSPC halfway through a
checkpoint upload, from epoch 3 on). The run fails at once with the reason; no half-written
file is left in the store and every checkpoint row points at complete files; the same worker
then runs the next job."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.faults.conftest import PrivateRedis, tiny_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

FULL_FROM_EPOCH = 3


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_full_artifact_store_fails_the_run_with_the_reason_and_lists_nothing_half_written(
    stack_factory, new_postgres_database, private_redis: PrivateRedis, figures: dict
):
    stack = stack_factory(new_postgres_database(), private_redis.url)
    api = stack.start_api()
    worker = stack.start_worker(hooks={"REGLAB_FAULT_ENOSPC": str(FULL_FROM_EPOCH)})
    eid = api.submit(tiny_spec(epochs=6, name="store-full"))["id"]
    row = stack.wait_terminal([eid], timeout=120)[eid]
    after = api.submit(tiny_spec(epochs=2, name="after-full"))["id"]
    done = stack.wait_terminal([after], timeout=90)[after]

    store = stack.root / "artifacts"
    partial = list(store.rglob("*.part"))
    rows = stack.query(
        "SELECT uri, state_uri, sidecar_uri, epoch, size, sha256 FROM checkpoints "
        "WHERE experiment_id = :id",
        id=eid,
    )
    bad = []
    for r in rows:
        weights, state, sidecar = (store / r[k] for k in ("uri", "state_uri", "sidecar_uri"))
        if not (weights.is_file() and state.is_file() and sidecar.is_file()):
            bad.append((r["uri"], "missing"))
            continue
        side = json.loads(sidecar.read_text())
        if not (_sha256(weights) == r["sha256"] == side["weights_sha256"]
                and _sha256(state) == side["state_sha256"]):  # fmt: skip
            bad.append((r["uri"], "incomplete"))
    figures.update(
        experiments=2,
        status=row["status"],
        attempts=row["attempts"],
        error=row["error"],
        checkpoints_listed=len(rows),
        newest_listed_epoch=max((r["epoch"] for r in rows), default=None),
        partial_files_left=len(partial),
        bad_checkpoint_references=len(bad),
        next_job=done["status"],
        worker_replaced=worker.popen.poll() is not None,
        lost=0,
    )
    assert row["status"] == "failed" and row["attempts"] == 1
    assert "No space left on device" in row["error"] and "/" not in row["error"], row["error"]
    assert rows and figures["newest_listed_epoch"] == FULL_FROM_EPOCH - 1
    assert not partial and not bad, (partial, bad)
    assert done["status"] == "succeeded" and worker.popen.poll() is None
