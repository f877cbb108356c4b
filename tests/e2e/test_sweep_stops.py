"""A sweep whose early-stopping rule stops trials: the sweep page marks each stopped trial with
the reason the API gives. Its own ``reglab serve``, whose reconciler (which applies the rule)
ticks every second."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Server, Watched, start_server, tiny

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(400)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(
        Path(tmp_path_factory.mktemp("sweep-stops")), env={"REGLAB_RECONCILE_SECONDS": "1"}
    )
    try:
        yield srv
    finally:
        srv.http.close()
        srv.proc.stop()


def test_a_sweeps_stopped_trials_show_their_stop_reason(watched: Watched, server: Server):
    # the metric is lr (recorded every epoch: exactly the configuration's learning rate), so the
    # second trial, run after the first, is below it at ASHA's first rung and is stopped
    # 40 epochs (rungs 1, 4 and 16) of 800 steps: long enough for the 1 s tick to act before
    # the end (12 epochs ran in about 2 s and a stop sometimes came after the trial had ended)
    base = tiny("asha", epochs=40)
    base["data"]["n_train"] = 4000
    base["train"]["batch_size"] = 5
    body = {
        "name": "asha-stops",
        "base": base,
        "space": {"train.lr": [0.04, 0.01]},
        "max_concurrent": 1,
        "metric": "lr",
        "mode": "max",
        "early_stopping": {"rule": "asha", "min_epochs": 1, "reduction_factor": 4},
    }
    created = server.http.post("/v1/sweeps", json=body)
    assert created.status_code == 202, created.text
    sweep = server.wait_sweep(created.json()["id"], timeout=300)
    trials = sweep["experiments"]
    assert trials[0]["stop_reason"] is None
    assert trials[1]["status"] == "cancelled", trials
    assert trials[1]["stop_reason"].startswith("stopped by ASHA at epoch "), trials
    page = watched.open(f"sweeps/{sweep['id']}")
    for t in trials:
        row = page.locator(f"#trials tbody tr[data-idx='{t['idx']}']")
        assert row.locator("td").nth(3).inner_text() == t["status"]
        assert row.locator("td").nth(4).inner_text() == (t["stop_reason"] or "")
        assert ("diff" in (row.get_attribute("class") or "").split()) == bool(t["stop_reason"])
    assert "1 trial(s) stopped early" in page.locator("#view").inner_text()
