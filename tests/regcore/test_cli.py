"""``reglab run`` and ``reglab catalog`` through the installed command and its typer app."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from regcore.spec import regularizer_names
from reglab.cli import app

SPEC = {
    "name": "cli-test",
    "seed": 0,
    "data": {"name": "mnist1d", "n_train": 200, "n_val": 100, "n_test": 100},
    "model": {"name": "mlp", "hidden": [32]},
    "train": {"lr": 0.1, "batch_size": 50, "epochs": 2, "device": "cpu"},
    "regularizers": [{"name": "l2", "strength": 1e-4}, {"name": "dropout", "p": 0.2}],
}

runner = CliRunner()


def _write(tmp_path: Path, spec: dict) -> Path:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def _run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_run_writes_the_summary_the_metrics_and_checkpoints(tmp_path, cache_dir):
    out = tmp_path / "out"
    result = _run("run", _write(tmp_path, SPEC), "--out", out, "--cache-dir", cache_dir)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "succeeded" and summary["epochs_run"] == 2
    assert {"train_loss", "val_loss", "test_acc", "gen_gap", "ece"} <= set(summary["metrics"])
    lines = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(set(rec) == {"step", "key", "value"} for rec in lines)
    assert {rec["step"] for rec in lines} == {1, 2}
    assert (out / "checkpoints" / "last.safetensors").exists()
    assert (out / "checkpoints" / "best.safetensors").exists()


def test_a_finished_run_is_not_overwritten_without_force(tmp_path, cache_dir):
    out = tmp_path / "out"
    spec = _write(tmp_path, SPEC)
    assert _run("run", spec, "--out", out, "--cache-dir", cache_dir).exit_code == 0
    again = _run("run", spec, "--out", out, "--cache-dir", cache_dir)
    assert again.exit_code != 0 and "--force" in again.output
    forced = _run("run", spec, "--out", out, "--cache-dir", cache_dir, "--force")
    assert forced.exit_code == 0, forced.output


def test_a_bad_spec_exits_non_zero_naming_the_field_and_writes_nothing(tmp_path, cache_dir):
    bad = {**SPEC, "regularizers": [{"name": "l2"}, {"name": "dropout", "p": 1.5}]}
    out = tmp_path / "out"
    result = _run("run", _write(tmp_path, bad), "--out", out, "--cache-dir", cache_dir)
    assert result.exit_code != 0
    assert "regularizers[1].p" in result.output
    assert not out.exists()


def test_an_unknown_regularizer_name_lists_the_known_ones(tmp_path, cache_dir):
    bad = {**SPEC, "regularizers": [{"name": "dropall"}]}
    result = _run("run", _write(tmp_path, bad), "--out", tmp_path / "out", "--cache-dir", cache_dir)
    assert result.exit_code != 0
    assert "regularizers[0].name" in result.output and "dropout" in result.output


def test_a_missing_or_malformed_spec_file_is_a_clear_error(tmp_path):
    missing = _run("run", tmp_path / "nope.json", "--out", tmp_path / "out")
    assert missing.exit_code != 0 and "not found" in missing.output
    (tmp_path / "broken.json").write_text("{")
    broken = _run("run", tmp_path / "broken.json", "--out", tmp_path / "out")
    assert broken.exit_code != 0 and "not valid JSON" in broken.output
    assert not (tmp_path / "out").exists()


def test_catalog_lists_every_registered_name():
    result = _run("catalog", "--json")
    assert result.exit_code == 0
    names = [e["name"] for e in json.loads(result.stdout)]
    assert names == regularizer_names()
    table = _run("catalog")
    assert table.exit_code == 0
    for name in ("l2", "dropout", "gaussian_dropout", "dropconnect", "early_stopping"):
        assert name in table.output


@pytest.mark.skipif(
    shutil.which("reglab") is None and not Path(sys.executable).with_name("reglab").exists(),
    reason="the reglab console script is not installed",
)
def test_the_installed_command_answers_help():
    exe = Path(sys.executable).with_name("reglab")
    command = str(exe) if exe.exists() else "reglab"
    for args in ([], ["run"], ["catalog"]):
        done = subprocess.run(
            [command, *args, "--help"], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert "Usage" in done.stdout
    assert (
        "SPEC.json"
        in subprocess.run(
            [command, "run", "--help"], capture_output=True, text=True, timeout=60
        ).stdout
    )
