"""Every file in examples/ works: each spec trains with ``reglab run`` (shrunk to a few hundred
examples and 2 epochs here) and its model comes back with ``regcore.load_model``; each sweep file
is accepted by ``reglab sweep`` and its first experiment trains."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from reglab.cli import app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SPECS = sorted(p for p in EXAMPLES.glob("*.json") if not p.name.endswith(".sweep.json"))
SWEEPS = sorted(EXAMPLES.glob("*.sweep.json"))


def tiny(spec: dict[str, Any]) -> dict[str, Any]:
    """The same experiment, small enough for a test: 2 epochs, a few hundred examples."""
    spec = copy.deepcopy(spec)
    spec["train"] = {**spec.get("train", {}), "epochs": 2, "device": "cpu"}
    if "steps" in spec["train"]:  # a steps budget (Fig. 9.5's protocol): 4 steps, not 2 epochs
        spec["train"].update(steps=4, eval_every=2)
        del spec["train"]["epochs"]
    for data in (spec.get("data"), (spec.get("pretrain") or {}).get("source")):
        if data and data.get("name") in ("mnist1d", "digits"):
            data.update(n_train=200, n_val=50, n_test=50)
    if spec.get("pretrain"):
        spec["pretrain"]["epochs"] = 1
    if spec.get("self_supervised"):
        spec["self_supervised"]["epochs"] = 1
    if spec.get("mc_dropout"):
        spec["mc_dropout"]["passes"] = 2
    snapshot = (spec.get("ensemble") or {}).get("snapshot")
    if snapshot:
        snapshot["cycles"] = 2  # cycles must divide the 2 epochs
    return spec


def test_there_is_an_example_of_each_kind():
    names = {p.name for p in SPECS + SWEEPS}
    for kind in (
        "plain",
        "ensemble",
        "hyper-ensemble",
        "snapshot-ensemble",
        "mc-dropout",
        "pretrain-finetune",
        "multitask",
        "self-supervised",
        "early-stopping-retrain",
    ):
        assert f"{kind}.json" in names  # fmt: skip
    for method in ("grid", "factorial", "random"):
        assert f"sweep-{method}.sweep.json" in names
    assert "mnist1d-comparison.sweep.json" in names


@pytest.mark.slow
@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_each_example_spec_runs_and_its_model_loads_back(path, tmp_path, cache_dir):
    import regcore

    spec = tiny(json.loads(path.read_text()))
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    out = tmp_path / "run"
    args = ["run", str(spec_file), "--out", str(out), "--cache-dir", str(cache_dir)]
    result = CliRunner().invoke(app, [*args, "--threads", "1"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "succeeded" and summary["epochs_run"] >= 1
    best = out / "checkpoints" / "best.safetensors"
    if not best.exists():
        best = out / "checkpoints" / "last.safetensors"
    model = regcore.load_model(spec, best)
    features = {"mnist1d": 40, "digits": 64}[spec["data"]["name"]]
    with torch.no_grad():
        y = model(torch.zeros(3, features))
    assert y.shape == (3, 10) and torch.isfinite(y).all()


@pytest.mark.slow
@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_each_example_sweep_is_accepted_and_its_first_experiment_runs(
    path, reglab, lab, tmp_path, cache_dir
):
    from regcore.experiment import run
    from service.sweeps.plan import SweepRequest, expand

    body = json.loads(path.read_text())
    body["base"] = tiny(body["base"])
    small = tmp_path / path.name
    small.write_text(json.dumps(body))
    result = reglab("sweep", small)
    assert result.exit_code == 0, result.output
    sweep = lab.sweep(result.stdout.strip())
    plan = expand(SweepRequest.model_validate(body))
    assert len(sweep["experiments"]) == len(plan.trials) > 1
    done = run(plan.trials[-1].spec, tmp_path / "trial", cache_dir=cache_dir, threads=1)
    assert done.status == "succeeded"
