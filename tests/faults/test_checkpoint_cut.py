"""Scenario 7: the worker is SIGKILLed halfway through writing a checkpoint to the artifact store
(the epoch-3 weights are uploaded, its training state half written; fault injection in
tests/faults/hooks). The database must never point at a partial file, and the run resumes from
the last complete checkpoint it recorded, finishing as an uninterrupted run would."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from tests.faults.conftest import PrivateRedis, reference_run, tiny_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

EPOCHS = 8
CUT_EPOCH = 3


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_checkpoint_write_killed_halfway_is_never_referenced_and_resume_uses_the_last_complete(
    stack_factory, new_postgres_database, private_redis: PrivateRedis, tmp_path: Path,
    cache_dir: Path, figures: dict,
):  # fmt: skip
    stack = stack_factory(new_postgres_database(), private_redis.url)
    api = stack.start_api()
    spec = tiny_spec(epochs=EPOCHS, name="checkpoint-cut")
    eid = api.submit(spec)["id"]
    cut = f"{eid}/checkpoints/last-{CUT_EPOCH:04d}.state.safetensors"
    first = stack.start_worker(scratch="scratch", hooks={"REGLAB_FAULT_CUT_PUT": cut})
    first.popen.wait(90)  # it kills itself mid-upload
    assert "fault injection: SIGKILL" in first.output()

    store = stack.root / "artifacts"
    partial = list((store / eid / "checkpoints").glob(f".last-{CUT_EPOCH:04d}.state*.part"))
    recorded = stack.query(
        "SELECT kind, epoch, uri, state_uri, sidecar_uri, size, sha256 FROM checkpoints "
        "WHERE experiment_id = :id",
        id=eid,
    )
    recorded_last_at_kill = max(r["epoch"] for r in recorded if r["kind"] == "last")
    # the local copy is damaged too (as if that write had been cut): it must not be used
    local = stack.root / "scratch" / eid / "checkpoints" / "last.safetensors"
    local.write_bytes(local.read_bytes()[: local.stat().st_size // 3])

    second = stack.start_worker(scratch="scratch")  # same scratch folder, no fault
    done = stack.wait_terminal([eid], timeout=120)[eid]
    resumed = re.search(rf"{eid}: resuming from epoch (\d+)", second.output())

    # every checkpoint row, then and now, names complete files whose hashes match
    bad_references = []
    rows = stack.query(
        "SELECT kind, epoch, uri, state_uri, sidecar_uri, size, sha256 FROM checkpoints "
        "WHERE experiment_id = :id",
        id=eid,
    )
    for row in recorded + rows:
        weights, state, sidecar = (store / row[k] for k in ("uri", "state_uri", "sidecar_uri"))
        if not (weights.is_file() and state.is_file() and sidecar.is_file()):
            if row in rows:  # superseded rows' files may since be deleted, never rewritten
                bad_references.append((row["uri"], "missing"))
            continue
        side = json.loads(sidecar.read_text())
        if not (
            weights.stat().st_size == row["size"]
            and _sha256(weights) == row["sha256"] == side["weights_sha256"]
            and _sha256(state) == side["state_sha256"]
        ):
            bad_references.append((row["uri"], "incomplete"))
    figures.update(
        experiments=1,
        kills=1,
        restarts=1,
        partial_files_left=len(partial),
        last_recorded_at_kill=recorded_last_at_kill,
        resumed_from_epoch=int(resumed.group(1)) if resumed else None,
        bad_checkpoint_references=len(bad_references),
        status=done["status"],
        lost=0 if done["status"] == "succeeded" else 1,
    )

    assert partial, "the fault did not leave a half-written file: the test proved nothing"
    assert all(p.stat().st_size > 0 for p in partial)
    assert recorded_last_at_kill == CUT_EPOCH - 1
    assert not any(
        row[k].endswith(".part") for row in recorded + rows for k in ("uri", "state_uri")
    )
    assert not bad_references, bad_references
    assert resumed and int(resumed.group(1)) == CUT_EPOCH - 1
    assert done["status"] == "succeeded" and done["attempts"] == 2
    assert done["summary"]["epochs_run"] == EPOCHS
    reference, reference_series = reference_run(spec, tmp_path / "ref", cache_dir)
    assert stack.metric_series(eid)["val_loss"] == reference_series["val_loss"]
    for key, value in reference.metrics.items():
        assert done["summary"]["metrics"][key] == pytest.approx(value, rel=1e-9, abs=1e-12)
    assert stack.duplicated_metric_points() == 0
    assert stack.audit().violations() == []
