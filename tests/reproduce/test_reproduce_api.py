"""``reglab reproduce --api-url`` against a real service: the embedded default (``reglab serve``
with its worker, SQLite and the filesystem broker), one quick claim over two seeds. The runs the
service did are the ones the report judged, and they give the figures a local run of the same
specs gives (same spec and seed on CPU: same metrics)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from regcore.reproduce.claims import CLAIMS
from regcore.reproduce.runner import local_executor, run_claim
from reglab.cli import app
from reglab.client import RegLabClient
from tests.integration.conftest import free_port, serve

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

CLAIM = "ensemble_error_formula"  # one arm, a second a run


def test_reproduce_through_a_real_service_runs_there_and_matches_a_local_run(tmp_path: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out = tmp_path / "report"
    server = serve(tmp_path, port)
    try:
        args = ["reproduce", "--quick", "--seeds", "2", "--claim", CLAIM, "--api-url", url,
                "--timeout", "120", "--out", str(out)]  # fmt: skip
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, (result.output, server.tail())
        with RegLabClient(url) as api:
            runs = [api.get(e["id"]) for e in api.iter_experiments()]
    finally:
        server.stop()

    text = (out / "report.md").read_text()
    assert f"run through {url}" in text and f"## {CLAIM}" in text
    assert "**Verdict**: holds" in text
    assert sorted((r["status"], r["spec"]["seed"]) for r in runs) == [
        ("succeeded", 0),
        ("succeeded", 1),
    ]
    served = {r["spec"]["seed"]: (r["summary"] or {})["metrics"] for r in runs}

    claim = next(c for c in CLAIMS if c.id == CLAIM)
    local = run_claim(claim, local_executor(tmp_path / "cache"), [0, 1], quick=True)
    for seed, metrics in zip(local.seeds, local.runs["ensemble"], strict=True):
        for key in ("ens_sq_error", "ens_v", "ens_c", "test_loss"):
            assert math.isclose(served[seed][key], metrics[key], rel_tol=1e-9), (seed, key)
