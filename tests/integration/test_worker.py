"""Against the real parts: the API (``reglab serve``) on PostgreSQL + Redis and real
``reglab worker`` subprocesses, killed and restarted as a machine would be."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file

from regcore.experiment import run as run_experiment
from regcore.spec import parse_spec
from tests.integration.conftest import LEASE_S, Stack
from tests.worker.helpers import diverging_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]


def spec(
    n_train: int = 300, batch_size: int = 50, epochs: int = 3, hidden: tuple = (32,), **extra: Any
) -> dict:
    return {
        "name": "integration",
        "seed": 0,
        "data": {"name": "mnist1d", "n_train": n_train, "n_val": 100, "n_test": 100},
        "model": {"name": "mlp", "hidden": list(hidden)},
        "train": {"lr": 0.05, "batch_size": batch_size, "epochs": epochs, "device": "cpu"},
        "regularizers": [{"name": "l2", "strength": 0.0005}],
        **extra,
    }


def ended(exp: dict) -> bool:
    return exp["status"] in ("succeeded", "failed", "cancelled")


def at_epoch(n: int):
    return lambda exp: exp["status"] == "running" and exp["progress"]["epoch"] >= n


def test_a_submitted_experiment_succeeds_with_metrics_and_a_loadable_checkpoint(
    workers: Stack, tmp_path: Path
):
    workers.start_worker()
    exp = workers.api.submit(spec(epochs=3))
    assert exp["status"] == "queued"
    done = workers.wait(exp["id"], ended)
    assert done["status"] == "succeeded", done
    assert done["summary"]["epochs_run"] == 3 and done["attempts"] == 1
    series = workers.api.metrics(exp["id"], keys=["val_loss", "train_acc"])
    assert [p["step"] for p in series["val_loss"]] == [1, 2, 3]
    assert all(0.0 <= p["value"] <= 1.0 for p in series["train_acc"])
    ckpts = workers.api.checkpoints(exp["id"])
    last = next(c for c in ckpts if c["kind"] == "last")
    assert last["epoch"] == 3
    path = workers.api.download_checkpoint(exp["id"], last["id"], tmp_path, sha256=last["sha256"])
    weights = load_file(str(path))
    assert weights and all(t.isfinite().all() for t in weights.values())


def test_a_diverging_run_fails_at_once_with_the_reason_and_is_not_retried(workers: Stack):
    workers.start_worker()
    exp = workers.api.submit(diverging_spec())
    done = workers.wait(exp["id"], ended)
    assert done["status"] == "failed"
    assert "became inf" in done["error"]
    assert done["attempts"] == 1


def test_cancel_stops_a_running_experiment_within_an_epoch_and_keeps_its_last_checkpoint(
    workers: Stack,
):
    workers.start_worker()
    # ~2 s epochs (1500 steps), longer than the worker's 1 s cancel poll: "within one epoch"
    exp = workers.api.submit(spec(n_train=3000, batch_size=2, epochs=100, hidden=(1024, 1024)))
    workers.wait(exp["id"], at_epoch(1))
    at_cancel = workers.api.cancel(exp["id"])["progress"]["epoch"]
    done = workers.wait(exp["id"], ended, timeout=30)
    assert done["status"] == "cancelled"
    assert done["progress"]["epoch"] <= at_cancel + 1
    last = next(c for c in workers.api.checkpoints(exp["id"]) if c["kind"] == "last")
    assert last["epoch"] == done["progress"]["epoch"]


def test_a_killed_worker_s_run_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(
    workers: Stack, tmp_path: Path, cache_dir: Path
):
    the_spec = spec(n_train=2000, batch_size=5, epochs=40)
    first = workers.start_worker()
    exp = workers.api.submit(the_spec)
    workers.wait(exp["id"], at_epoch(4))
    first.kill()
    killed_at = workers.api.get(exp["id"])["progress"]["epoch"]
    assert killed_at < 40

    second = workers.start_worker()  # the reconciler requeues it once the lease expires
    done = workers.wait(exp["id"], ended, timeout=60 + LEASE_S)
    resumed = re.search(rf"{exp['id']}: resuming from epoch (\d+)", second.output())
    assert resumed and 1 <= int(resumed.group(1)) <= killed_at
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
    assert done["summary"]["epochs_run"] == 40

    reference = run_experiment(
        parse_spec(the_spec), workdir=tmp_path / "ref", cache_dir=cache_dir, threads=1
    )
    series = workers.api.metrics(exp["id"], keys=["val_loss", "train_loss"])
    reference_series = [
        (int(rec["step"]), rec["value"])
        for rec in map(json.loads, (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines())
        if rec["key"] == "val_loss"
    ]
    assert [(p["step"], p["value"]) for p in series["val_loss"]] == reference_series
    for key, value in reference.metrics.items():
        assert done["summary"]["metrics"][key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_a_run_whose_workers_keep_dying_fails_after_max_attempts(workers: Stack):
    exp = workers.api.submit(spec(n_train=2000, batch_size=10, epochs=500))
    for attempt in (1, 2):  # the stack allows two attempts
        worker = workers.start_worker()
        workers.wait(
            exp["id"],
            lambda e, a=attempt: at_epoch(1)(e) and e["attempts"] == a,
            timeout=60 + LEASE_S,
        )
        worker.kill()
    done = workers.wait(exp["id"], ended, timeout=30 + LEASE_S)
    assert done["status"] == "failed"
    assert "gave up after 2 attempt(s)" in done["error"]
