"""A packed sweep on the embedded default (``reglab serve``: SQLite, the filesystem broker, the
embedded worker): its trials run as one pack (``worker.packs``) and each keeps what a lone run
has (its row, status, epochs, metrics, checkpoint); cancelling one member stops it alone."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reglab.client import RegLabClient
from tests.integration.conftest import Proc, free_port, serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def base(epochs: int, n_train: int = 300, batch_size: int = 50) -> dict[str, Any]:
    return {
        "data": {"name": "mnist1d", "n_train": n_train, "n_val": 100, "n_test": 100},
        "model": {"name": "mlp", "hidden": [32]},
        "train": {"lr": 0.05, "batch_size": batch_size, "epochs": epochs, "device": "cpu"},
        "regularizers": [{"name": "l2", "strength": 1e-4}, {"name": "dropout", "p": 0.1}],
    }


#: 200 steps an epoch (~0.2-0.5 s for a pack of four here): long enough for a cancel, the 1 s
#: reconciler tick and the worker's 1 s poll to act long before a 20-30 epoch pack ends, on a
#: quiet box as on a loaded one
SLOW = {"n_train": 1000, "batch_size": 5}


def sweep(epochs: int, **kw: Any) -> dict[str, Any]:
    return {
        "name": "packed",
        "base": base(epochs, **kw),
        "space": {"regularizers[0].strength": [0.0, 1e-2], "regularizers[1].p": [0.0, 0.2]},
        "max_concurrent": 4,
        "metric": "val_acc",
    }


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Iterator[tuple[RegLabClient, Proc]]:
    port = free_port()
    # a reconciler tick every second: early stopping acts within a pack's run
    proc = serve(tmp_path_factory.mktemp("packed"), port, env={"REGLAB_RECONCILE_SECONDS": "1"})
    with RegLabClient(f"http://127.0.0.1:{port}") as api:
        try:
            yield api, proc
        finally:
            proc.stop()


def wait_sweep(api: RegLabClient, sweep_id: str, proc: Proc, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while (s := api.sweep(sweep_id))["status"] == "running":
        assert time.monotonic() < deadline, (s["counts"], proc.tail())
        time.sleep(0.3)
    return s


def shape(api: RegLabClient, eid: str) -> dict[str, list[int]]:
    return {k: [p["step"] for p in v] for k, v in api.metrics(eid).items()}


def test_a_packed_sweeps_trials_keep_their_own_rows_metrics_and_checkpoints(service):
    api, proc = service
    s = wait_sweep(api, api.create_sweep(sweep(epochs=2))["id"], proc)
    assert s["status"] == "completed" and s["counts"]["succeeded"] == 4, s["counts"]
    ids = [e["experiment_id"] for e in s["experiments"]]
    assert len(set(ids)) == 4
    # the same spec as trial 0, run alone (its own job, not packed)
    lone = api.wait(api.submit(api.get(ids[0])["spec"])["id"], timeout=60, poll=0.3)
    assert lone["status"] == "succeeded", lone
    for eid in ids:
        exp = api.get(eid)
        assert exp["status"] == "succeeded" and exp["summary"]["epochs_run"] == 2, exp
        assert exp["attempts"] == 1 and exp["progress"]["epoch"] == 2
        assert shape(api, eid) == shape(api, lone["id"]), eid
        assert [c["kind"] for c in api.checkpoints(eid)] == ["last"]
        assert any("pack of 4" in line["message"] for line in api.logs(eid)["items"])
    assert not any("pack of" in line["message"] for line in api.logs(lone["id"])["items"])
    # a member trains as it would alone: trial 0's curve is its lone run's
    packed, alone = (
        api.metrics(ids[0], keys=["val_loss"]),
        api.metrics(lone["id"], keys=["val_loss"]),
    )
    for p, q in zip(packed["val_loss"], alone["val_loss"], strict=True):
        assert p["value"] == pytest.approx(q["value"], abs=1e-4)


def test_cancelling_one_member_of_a_running_pack_leaves_the_others_running(service):
    api, proc = service
    epochs = 30
    created = api.create_sweep(sweep(epochs=epochs, **SLOW))
    ids = [e["experiment_id"] for e in created["experiments"]]
    victim = ids[1]
    deadline = time.monotonic() + 60
    while api.get(victim)["progress"]["epoch"] < 2:
        assert time.monotonic() < deadline, proc.tail()
        time.sleep(0.1)
    api.cancel(victim)
    # the victim's row is settled as soon as it stops, while the others still train
    while (row := api.get(victim))["status"] == "running":
        assert time.monotonic() < deadline, proc.tail()
        time.sleep(0.1)
    assert row["status"] == "cancelled", row
    others = [api.get(eid) for eid in ids if eid != victim]
    assert any(o["status"] == "running" for o in others), [o["status"] for o in others]
    s = wait_sweep(api, created["id"], proc)
    cancelled = api.get(victim)
    assert cancelled["status"] == "cancelled", cancelled
    assert cancelled["progress"]["epoch"] < epochs
    assert len(shape(api, victim)["val_loss"]) == cancelled["progress"]["epoch"]
    for eid in ids:
        if eid == victim:
            continue
        exp = api.get(eid)
        assert exp["status"] == "succeeded" and exp["summary"]["epochs_run"] == epochs, exp
        assert shape(api, eid)["val_loss"] == list(range(1, epochs + 1))
    assert s["counts"]["succeeded"] == 3 and s["counts"]["cancelled"] == 1


def test_asha_stops_members_of_a_running_pack_alone_on_a_rigged_metric(service):
    """The metric is ``lr`` (each trial's own learning rate, recorded every epoch), so at every
    rung the 0.04 trial is above the top quarter of the other three's values and each of the
    others below it (numpy's percentile): those three are stopped inside the pack, whichever
    rung the tick judges, and the 0.04 one goes on to the end."""
    api, proc = service
    epochs = 30
    body = {
        **sweep(epochs=epochs, **SLOW),
        "space": {"train.lr": [0.04, 0.012, 0.011, 0.01]},
        "metric": "lr",
        "mode": "max",
        "early_stopping": {"rule": "asha", "min_epochs": 1, "reduction_factor": 4},
    }
    s = wait_sweep(api, api.create_sweep(body)["id"], proc)
    first, *rest = s["experiments"]
    assert first["status"] == "succeeded" and first["stop_reason"] is None, s["experiments"]
    assert api.get(first["experiment_id"])["summary"]["epochs_run"] == epochs
    for e in rest:
        assert e["status"] == "cancelled", [(x["status"], x["stop_reason"]) for x in rest]
        assert e["stop_reason"].startswith("stopped by ASHA at epoch "), e
        assert api.get(e["experiment_id"])["progress"]["epoch"] < epochs
    assert s["counts"]["stopped_early"] == 3
    assert any("pack of 4" in line["message"] for line in api.logs(first["experiment_id"])["items"])


def resumed_from(api: RegLabClient, eid: str) -> list[int]:
    """The epochs a run's log says it resumed from (``worker.reporter``'s on_start line)."""
    said = re.compile(rf"experiment {eid}: resuming from epoch (\d+)")  # a pack's log: all
    found = (said.search(x["message"]) for x in api.logs(eid)["items"])
    return [int(m.group(1)) for m in found if m]


@pytest.mark.slow
def test_after_the_worker_is_killed_mid_pack_its_members_resume_as_a_pack_from_their_checkpoints(
    tmp_path: Path,
):
    env = {"REGLAB_LEASE_SECONDS": "4", "REGLAB_HEARTBEAT_SECONDS": "1",
           "REGLAB_RECONCILE_SECONDS": "1"}  # fmt: skip
    port = free_port()
    proc = serve(tmp_path, port, env=env)
    epochs = 20
    with RegLabClient(f"http://127.0.0.1:{port}") as api:
        created = api.create_sweep(sweep(epochs=epochs, **SLOW))
        ids = [e["experiment_id"] for e in created["experiments"]]
        deadline = time.monotonic() + 60
        while min(api.get(i)["progress"]["epoch"] for i in ids) < 6:  # a checkpoint at 5
            assert time.monotonic() < deadline, proc.tail()
            time.sleep(0.1)
        at_kill = max(api.get(i)["progress"]["epoch"] for i in ids)
        proc.kill()  # the whole group: the API and the embedded worker, mid-pack
        proc = serve(tmp_path, port, env=env)
        try:
            s = wait_sweep(api, created["id"], proc)
            assert s["counts"]["succeeded"] == 4, (s["counts"], proc.tail())
            for eid in ids:
                exp: Any = api.get(eid)
                assert exp["summary"]["epochs_run"] == epochs and exp["attempts"] == 2, exp
                # the second attempt went on from the members' checkpoint, not from epoch 0
                (start,) = resumed_from(api, eid)
                assert 5 <= start <= at_kill and start % 5 == 0, (start, at_kill)
                # every key at every epoch, once
                for key, steps in shape(api, eid).items():
                    assert steps == list(range(1, epochs + 1)), (eid, key, steps)
            out = proc.output()  # both starts' (one log file)
            assert "starts over" not in out and "the run starts from epoch 0" not in out
            assert out.count("pack of ") >= 2, "the requeued members went out as a pack again"
        finally:
            proc.stop()
