"""``reglab reproduce`` end to end on one claim and a tiny budget: a report with a verdict and a
PNG (the ensemble identity: two seeds of a 4-member toy1d ensemble, a second each)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from reglab.cli import app


@pytest.mark.slow
def test_one_claim_writes_a_report_with_a_verdict_and_a_png(tmp_path: Path) -> None:
    out = tmp_path / "report"
    args = ["reproduce", "--quick", "--seeds", "2", "--claim", "ensemble_error_formula"]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--cache-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = (out / "report.md").read_text()
    assert "## ensemble_error_formula" in text
    assert "**Verdict**: holds" in text  # an identity of the empirical v and c: exact
    assert "001 (SNU) Bagging" in text and "quick mode, 2 seeds" not in text
    assert "Mode: quick, 2 seeds" in text
    png = (out / "ensemble_error_formula.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000


def test_an_unknown_claim_is_refused_naming_the_option(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["reproduce", "--claim", "nope", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "--claim" in result.output and "nope" in result.output


def test_through_the_api_each_spec_is_submitted_and_its_summary_metrics_read() -> None:
    from reglab.reproduce_cli import _api_executor

    class Client:
        def __init__(self) -> None:
            self.sent: list[dict] = []

        def submit(self, spec: dict) -> dict:
            self.sent.append(spec)
            return {"id": f"e{len(self.sent)}"}

        def wait(self, eid: str, timeout: float | None = None) -> dict:
            if eid == "e2":
                return {"id": eid, "status": "failed", "error": "diverged"}
            return {"id": eid, "status": "succeeded", "summary": {"metrics": {"ece": 0.1}}}

    client = Client()
    execute = _api_executor(client, timeout=5)
    assert execute({"name": "a", "seed": 0}) == {"ece": 0.1}
    with pytest.raises(RuntimeError, match="e2 failed: diverged"):
        execute({"name": "b", "seed": 1})
    assert [s["name"] for s in client.sent] == ["a", "b"]
