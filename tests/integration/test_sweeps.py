"""Sweeps against the real parts: ``reglab serve`` (API + reconciler ticking every second) on
PostgreSQL + Redis, a real ``reglab worker``, and the ``reglab sweep`` / ``reglab compare`` CLI."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from scipy import stats

from tests.integration.conftest import PYTHON, ROOT, Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def base(n_train: int = 300, batch_size: int = 50, epochs: int = 3) -> dict[str, Any]:
    return {
        "data": {"name": "mnist1d", "n_train": n_train, "n_val": 100, "n_test": 100},
        "model": {"name": "mlp", "hidden": [32]},
        "train": {"lr": 0.05, "batch_size": batch_size, "epochs": epochs, "device": "cpu"},
        "regularizers": [{"name": "l2", "strength": 0.0005}],
    }


def cli(stack: Stack, *args: str, timeout: float = 200) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "reglab.cli", *args, "--api-url", stack.api.base_url],
        env=stack.env, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def wait_sweep(stack: Stack, sweep_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        s = stack.api._json("GET", f"/v1/sweeps/{sweep_id}")
        if s["status"] != "running":
            return s
        assert time.monotonic() < deadline, f"sweep still running: {s['counts']}"
        time.sleep(0.5)


def test_a_2x2_grid_with_2_seeds_completes_and_its_table_matches_a_hand_computation(
    workers: Stack, tmp_path: Path
):
    workers.start_worker()
    body = {
        "name": "grid2x2",
        "base": base(),
        "space": {"regularizers[0].strength": [0.0, 0.01], "train.lr": [0.02, 0.1]},
        "seeds": 2,
        "max_concurrent": 3,
        "metric": "val_acc",
    }
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(body))
    run = cli(workers, "sweep", str(path), "--wait", "--poll", "0.5")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "grid2x2" in run.stdout and "★" in run.stdout

    sweep_id = run.stderr.split("sweep ")[1].split(":")[0].strip()
    s = wait_sweep(workers, sweep_id)
    assert s["status"] == "completed"
    assert s["counts"]["succeeded"] == 8 and s["counts"]["pending"] == 0

    # by hand: every experiment's summary, grouped by configuration
    by_config: dict[int, list[float]] = {}
    for e in s["experiments"]:
        exp = workers.api.get(e["experiment_id"])
        assert exp["status"] == "succeeded" and exp["summary"]["epochs_run"] == 3
        assert exp["spec"]["seed"] == e["seed"]
        by_config.setdefault(e["config"], []).append(exp["summary"]["metrics"]["val_acc"])
    table = {row["config"]: row for row in s["results"]["table"]}
    means = {}
    for config, values in by_config.items():
        assert len(values) == 2
        mean = sum(values) / 2
        sd = abs(values[0] - values[1]) / 2**0.5
        half = stats.t.ppf(0.975, 1) * sd / 2**0.5
        got = table[config]["metrics"]["val_acc"]
        assert got["n"] == 2
        assert got["mean"] == pytest.approx(mean, abs=1e-12)
        assert got["ci_low"] == pytest.approx(mean - half, abs=1e-12)
        assert got["ci_high"] == pytest.approx(mean + half, abs=1e-12)
        means[config] = mean
    best = max(sorted(means), key=lambda c: means[c])
    assert s["results"]["best"]["config"] == best
    assert table[0]["params"] == {"regularizers[0].strength": 0.0, "train.lr": 0.02}

    # the experiments are filterable by their latest metric, and comparable side by side
    ids = [e["experiment_id"] for e in s["experiments"]]
    got = workers.api._json(
        "GET", "/v1/experiments", params={"filter": f"sweep_id={sweep_id}", "sort": "-val_acc"}
    )
    values = [workers.api.get(i["id"])["summary"]["metrics"]["val_acc"] for i in got["items"]]
    assert len(values) == 8 and values == sorted(values, reverse=True)
    shown = cli(workers, "compare", *ids[:3], timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "val_acc" in shown.stdout and ids[0][:8] in shown.stdout
    png = workers.api._request("GET", f"/v1/sweeps/{sweep_id}/plot", params={"x": "train.lr"})
    assert png.content.startswith(b"\x89PNG")


def test_asha_stops_the_configurations_below_the_rung_cutoff_on_a_rigged_metric(
    workers: Stack,
):
    """The metric is ``lr`` (recorded every epoch, exactly the configuration's learning rate),
    so who is worse is known beforehand: run one at a time, the first (highest lr) continues
    and each later one is below the top quarter of those before it at rung 1."""
    workers.start_worker()
    body = {
        "name": "asha",
        # ~0.5 s epochs: the tick (every 1 s) and the worker's poll (1 s) act long before the
        # end, with room for a loaded machine (the stop typically lands within 2-4 epochs)
        "base": base(n_train=4000, batch_size=5, epochs=30),
        "space": {"train.lr": [0.04, 0.02, 0.01]},
        "max_concurrent": 1,
        "metric": "lr",
        "mode": "max",
        "early_stopping": {"rule": "asha", "min_epochs": 1, "reduction_factor": 4},
    }
    s = workers.api._json("POST", "/v1/sweeps", json=body)
    s = wait_sweep(workers, s["id"])
    assert s["status"] == "completed"
    first, *rest = s["experiments"]
    assert first["status"] == "succeeded" and first["stop_reason"] is None
    for e in rest:
        assert e["status"] == "cancelled", s["experiments"]
        assert e["stop_reason"].startswith("stopped by ASHA at epoch "), e
        assert workers.api.get(e["experiment_id"])["progress"]["epoch"] < 30
    assert s["counts"]["stopped_early"] == 2
