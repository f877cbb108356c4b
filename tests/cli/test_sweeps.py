"""reglab sweeps ls and sweeps show (the results table), and reglab sweep, against the app."""

from __future__ import annotations

import json

import pytest

from tests.cli.conftest import tiny_spec

pytestmark = pytest.mark.timeout(120)


def _tsv(output: str) -> list[list[str]]:
    return [line.split("\t") for line in output.splitlines() if "\t" in line]


@pytest.fixture
def finished_sweep(lab, finish):
    body = {
        "name": "strengths",
        "base": tiny_spec(),
        "method": "grid",
        "space": {"regularizers[0].strength": [0.0001, 0.01]},
        "seeds": 2,
        "metric": "test_acc",
    }
    sweep = lab.create_sweep(body)
    accs = {0: [0.75, 0.8125], 1: [0.5, 0.625]}
    for trial in sweep["experiments"]:
        acc = accs[trial["config"]].pop()
        finish(trial["experiment_id"], {"test_acc": acc, "test_loss": 1 - acc})
    return sweep["id"]


def test_sweeps_ls_lists_whole_ids(reglab, finished_sweep):
    result = reglab("sweeps", "ls")
    assert result.exit_code == 0, result.output
    header, row = _tsv(result.stdout)
    assert row[header.index("id")] == finished_sweep
    assert row[header.index("name")] == "strengths" and "succeeded 4" in row[-1]
    items = json.loads(reglab("sweeps", "ls", "-o", "json").stdout)["items"]
    assert [s["id"] for s in items] == [finished_sweep]


def test_sweeps_show_prints_every_configuration_whole(reglab, finished_sweep):
    result = reglab("sweeps", "show", finished_sweep[:6])
    assert result.exit_code == 0, result.output
    header, *rows = _tsv(result.stdout)
    assert header[:3] == ["#", "parameters", "n"] and header[3] == "test_acc (95% CI)"
    assert [r[1] for r in rows] == [
        "regularizers[0].strength=0.0001",
        "regularizers[0].strength=0.01",
    ]
    assert rows[0][0] == "0 ★" and rows[0][2] == "2"  # the best by test_acc, 2 seeds
    assert rows[0][3].startswith("0.7812 ± ")
    assert result.stdout.startswith(f"# sweep strengths ({finished_sweep}): ")
    shown = json.loads(reglab("sweeps", "show", finished_sweep, "-o", "json").stdout)
    assert shown["results"]["best"]["config"] == 0


def test_sweep_submits_a_file_and_an_invalid_one_names_the_field(reglab, tmp_path):
    good = tmp_path / "sweep.json"
    good.write_text(json.dumps({"base": tiny_spec(), "space": {"train.lr": [0.001, 0.01]}}))
    result = reglab("sweep", good)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.strip()) == 32
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"base": tiny_spec(), "space": {"regularizers[0].strength": [-1]}}))
    result = reglab("sweep", bad)
    assert result.exit_code == 2 and "space.regularizers[0].strength" in result.output
