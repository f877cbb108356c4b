"""Scenario 1: twenty short experiments while the worker's whole process group is SIGKILLed
three times mid-training and restarted."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.faults.conftest import PrivateRedis, reference_run, tiny_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

N_EXPERIMENTS = 20
KILLS = 3
EPOCHS = 6


def test_twenty_runs_survive_three_worker_kills_with_nothing_lost_or_duplicated(
    stack_factory, new_postgres_database, private_redis: PrivateRedis, tmp_path: Path,
    cache_dir: Path, figures: dict,
):  # fmt: skip
    # max_attempts above the number of kills: every experiment must succeed, whichever is hit
    stack = stack_factory(new_postgres_database(), private_redis.url, max_attempts=KILLS + 2)
    api = stack.start_api()
    specs = {}
    for seed in range(N_EXPERIMENTS):
        spec = tiny_spec(seed=seed, epochs=EPOCHS, name=f"kill-{seed}")
        specs[api.submit(spec)["id"]] = spec
    figures.update(experiments=N_EXPERIMENTS, accepted=len(specs), kills=0, restarts=0)

    worker = stack.start_worker()
    killed: list[tuple[str, int]] = []
    checkpoint_at_kill: dict[str, int | None] = {}
    for _ in range(KILLS):
        # mid-training: a run of this worker has recorded an epoch and has more to go
        def running_mid_way(pid: int = worker.popen.pid):
            return next(
                (
                    (eid, r["last_epoch"])
                    for eid, r in stack.experiments().items()
                    if r["status"] == "running"
                    and (r["lease_owner"] or "").split(":")[1:2] == [str(pid)]
                    and 2 <= r["last_epoch"] < EPOCHS - 1
                ),
                None,
            )

        eid, epoch = stack.wait_until(running_mid_way, 120, "a run in mid-training")
        worker.kill()
        # what a resume can start from: the newest checkpoint recorded before the kill
        recorded = stack.query(
            "SELECT max(epoch) AS e FROM checkpoints WHERE experiment_id = :id AND kind = 'last'",
            id=eid,
        )[0]["e"]
        killed.append((eid, epoch))
        checkpoint_at_kill[eid] = recorded
        figures["kills"] += 1
        worker = stack.start_worker(scratch="scratch")  # a fresh process, as a supervisor would
        figures["restarts"] += 1

    rows = stack.wait_terminal(list(specs), timeout=240)
    statuses = [rows[eid]["status"] for eid in specs]
    lost = [eid for eid in specs if eid not in rows or rows[eid]["status"] not in ("succeeded",)]
    duplicated = stack.duplicated_metric_points()
    audit = stack.audit()
    violations = audit.violations()
    resumed = {eid: r for eid, r in rows.items() if r["attempts"] > 1}
    figures.update(
        killed_at=killed,
        succeeded=statuses.count("succeeded"),
        lost=len(lost),
        duplicated_metric_points=duplicated,
        resumed=len(resumed),
        lease_violations=len(violations),
        claims=len(audit.claims()),
    )

    assert not lost, {eid: rows.get(eid) for eid in lost}
    assert duplicated == 0
    assert not violations, violations[:10]
    # every kill hit a run in the middle; each such run was taken over once per kill
    assert sum(r["attempts"] - 1 for r in rows.values()) == KILLS
    assert {eid for eid, _ in killed} == set(resumed)
    for eid in specs:  # no gap either: every metric has every epoch, once
        series = stack.metric_series(eid)
        assert {k: [s for s, _ in v] for k, v in series.items()} == {
            k: list(range(1, EPOCHS + 1)) for k in series
        }, eid
        assert len(audit.claims(eid)) == rows[eid]["attempts"]

    logs = "".join(w.output() for w in stack.workers)
    matched = resumed_from_checkpoint = 0
    for eid, row in resumed.items():
        resumed_from = re.search(rf"{eid}: resuming from epoch (\d+)", logs)
        # from the last checkpoint recorded before the kill; from scratch only if there was none
        assert (int(resumed_from.group(1)) if resumed_from else None) == checkpoint_at_kill[eid]
        resumed_from_checkpoint += resumed_from is not None
        reference, reference_series = reference_run(specs[eid], tmp_path / eid, cache_dir)
        assert row["summary"]["epochs_run"] == reference.epochs_run == EPOCHS
        assert stack.metric_series(eid)["val_loss"] == reference_series["val_loss"]
        for key, value in reference.metrics.items():
            assert row["summary"]["metrics"][key] == pytest.approx(value, rel=1e-9, abs=1e-12)
        matched += 1
    figures.update(
        resumed_from_checkpoint=resumed_from_checkpoint, resumed_matching_uninterrupted=matched
    )
    assert resumed_from_checkpoint >= 1  # at least one kill exercised the resume path
