"""``reglab run`` on local files ("data": {"name": "file"}): each format trains and learns the
rule its labels follow; a local tie reference file still works."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from regcore.experiment import run
from regcore.spec import SpecError, parse_spec
from tests.datasets import files as F

pytestmark = pytest.mark.timeout(120)

TRAIN = {"optimizer": "adam", "lr": 0.01, "epochs": 15, "batch_size": 32, "device": "cpu"}


def write(tmp_path: Path, fmt: str) -> dict:
    if fmt == "images":
        x, y = F.images(400)
        (tmp_path / "i.npz").write_bytes(F.npz(x=x, y=y))
        return {"name": "file", "path": str(tmp_path / "i.npz")}
    x, y = F.table(n=500)
    data = {"npz": F.npz(x=x, y=y), "csv": F.csv(x, y), "parquet": F.parquet(x, y)}[fmt]
    path = tmp_path / f"t.{fmt}"
    path.write_bytes(data)
    return {"name": "file", "path": str(path), **({"target": "label"} if fmt != "npz" else {})}


@pytest.mark.parametrize("fmt", ["npz", "csv", "parquet", "images"])
def test_a_local_file_trains_and_learns_its_rule(tmp_path, fmt):
    torch.set_num_threads(1)
    model = (
        {"name": "cnn2d", "channels": [8]} if fmt == "images" else {"name": "mlp", "hidden": [16]}
    )
    spec = parse_spec({"data": write(tmp_path, fmt), "model": model, "train": TRAIN}, local=True)
    result = run(spec, workdir=tmp_path / "out", threads=1)
    assert result.status == "succeeded", result.reason
    acc = result.summary()["metrics"]["test_acc"]
    assert acc > 0.95, acc
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["metrics"]["test_acc"] == pytest.approx(acc)


def test_a_local_path_is_refused_without_local_and_a_missing_file_is_named(tmp_path):
    data = {"data": {"name": "file", "path": str(tmp_path / "none.npz")}, "model": {"name": "mlp"}}
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    assert err.value.errors[0]["field"] == "data.path"
    with pytest.raises(SpecError) as err:
        parse_spec(data, local=True)
    assert err.value.errors[0]["field"] == "data.path" and "no file" in str(err.value)


def _last(workdir: Path, key: str) -> float:
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [r["value"] for r in rows if r["key"] == key][-1]


def test_a_local_tie_reference_file_is_read(tmp_path):
    torch.set_num_threads(1)
    base = {"data": write(tmp_path, "npz"), "model": {"name": "mlp", "hidden": [8]},
            "train": {**TRAIN, "epochs": 2}}  # fmt: skip
    first = run(parse_spec(base, local=True), workdir=tmp_path / "a", threads=1)
    assert first.status == "succeeded"
    ref = next(p for p in sorted((tmp_path / "a" / "checkpoints").glob("*.safetensors"))
               if ".state." not in p.name)  # fmt: skip
    distance = {}
    for strength in (0.0, 1e3):
        tie = [{"name": "tie", "strength": strength, "reference": str(ref), "exclude": []}]
        spec = parse_spec({**base, "seed": 1, "regularizers": tie}, local=True)
        out = tmp_path / f"tie-{strength}"
        assert run(spec, workdir=out, threads=1).status == "succeeded"
        distance[strength] = _last(out, "tie_distance")
    assert distance[1e3] < 0.75 * distance[0.0], distance  # measured 1.74 vs 3.05


@pytest.mark.slow
def test_reglab_run_reads_a_local_file_and_names_a_bad_one(tmp_path):
    import subprocess
    import sys

    from tests.integration.conftest import ROOT, clean_env

    spec = {"data": write(tmp_path, "csv"), "model": {"name": "mlp", "hidden": [8]},
            "train": {**TRAIN, "epochs": 2}}  # fmt: skip
    (tmp_path / "s.json").write_text(json.dumps(spec))
    cmd = [sys.executable, "-m", "reglab.cli", "run", str(tmp_path / "s.json")]
    ok = subprocess.run([*cmd, "--out", str(tmp_path / "o")], env=clean_env(), cwd=ROOT,
                        capture_output=True, text=True, timeout=120)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["status"] == "succeeded"
    (tmp_path / "t.csv").write_text("f0,label\n1,0\nabc,1\n")
    bad = subprocess.run([*cmd, "--out", str(tmp_path / "p")], env=clean_env(), cwd=ROOT,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "column f0" in bad.stderr, bad.stderr
