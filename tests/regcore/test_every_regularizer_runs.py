"""Every catalog name runs from a spec through ``regcore.experiment.run`` (what ``reglab run``
calls), alone and beside first-half regularizers, and ``reglab catalog --json`` lists it.

The cases are parametrized over ``regularizer_names()``: a name added to the spec without an
entry here runs with its defaults on the base problem and fails the test if it cannot.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from pydantic_core import to_jsonable_python
from typer.testing import CliRunner

from regcore.experiment import run
from regcore.spec import parse_spec, regularizer_names, regularizer_spec_classes
from reglab.cli import app

#: a tiny classification problem: a run of two epochs takes a fraction of a second
BASE: dict[str, Any] = {
    "name": "every-regularizer",
    "seed": 0,
    "data": {"name": "mnist1d", "n_train": 100, "n_val": 50, "n_test": 50},
    "model": {"name": "mlp", "hidden": [16]},
    "train": {"optimizer": "sgd", "lr": 0.05, "batch_size": 50, "epochs": 2, "device": "cpu"},
}

TINY_TRANSFORMER = {"name": "transformer", "d_model": 8, "heads": 2, "layers": 1, "ff": 16}

#: what a name needs beyond the base problem: its own parameters, another model or dataset
OVERRIDES: dict[str, dict[str, Any]] = {
    "variational_dropout": {"model": {"name": "gru", "hidden_size": 8}},
    "dropblock": {"model": {"name": "cnn1d", "channels": [4, 4], "hidden": [8]}},
    "stochastic_depth": {"model": {"name": "resmlp", "width": 16, "blocks": 2}},
    "attention_dropout": {"model": TINY_TRANSFORMER},
    "embedding_dropout": {"model": TINY_TRANSFORMER},
    "feature_noise": {"params": {"ae_epochs": 5}},
    "early_stopping": {"params": {"patience": 1}},
    "swa": {"params": {"start": 0.5}},
    "sgld": {"params": {"thin": 1}},
    "pseudo_label": {"data": {**BASE["data"], "n_unlabeled": 100}},
}

#: further cases of one name on other data (image transforms need the 8×8 digits)
EXTRA_CASES: list[tuple[str, dict[str, Any]]] = [
    (
        "augment",
        {
            "data": {"name": "digits", "n_train": 100, "n_val": 50, "n_test": 50},
            "params": {"transforms": ["translate", "rotate", "flip", "blur", "brightness"]},
        },
    ),
    (
        "cutmix",
        {"data": {"name": "digits", "n_train": 100, "n_val": 50, "n_test": 50}},
    ),
    (
        "stochastic_depth",
        {"model": {"name": "cnn1d", "channels": [4, 4], "hidden": [8], "residual": True}},
    ),
    (
        "cutout",
        {
            "data": {"name": "digits", "n_train": 100, "n_val": 50, "n_test": 50},
            "params": {"size": 3},
        },
    ),
    ("tangent_prop", {"model": {"name": "mlp", "hidden": [16], "batch_norm": True}}),
    ("l2", {"data": {"name": "toy1d", "n_train": 30, "n_val": 20, "n_test": 20}}),
    (
        "consistency",
        {"data": {**BASE["data"], "n_unlabeled": 100}, "params": {"mode": "mean_teacher"}},
    ),
    ("soft_sharing", {"params": {"share_head": True}}),
]

#: first-half regularizers every name is combined with (a name already here is not repeated)
COMPANIONS: list[dict[str, Any]] = [
    {"name": "l2", "strength": 1e-3},
    {"name": "dropout", "p": 0.2},
    {"name": "label_smoothing", "epsilon": 0.1},
]


def spec_for(name: str, override: dict[str, Any], combined: bool) -> dict[str, Any]:
    own = {"name": name, **override.get("params", {})}
    regression = override.get("data", BASE["data"])["name"] == "toy1d"
    companions = [
        c
        for c in COMPANIONS
        if c["name"] != name and not (regression and c["name"] == "label_smoothing")
    ]
    return {
        **BASE,
        "data": override.get("data", BASE["data"]),
        "model": override.get("model", BASE["model"]),
        "regularizers": [*companions, own] if combined else [own],
    }


def check_run(spec_data: dict[str, Any], workdir: Path, cache_dir: Path) -> None:
    spec = parse_spec(spec_data)
    result = run(spec, workdir, cache_dir=cache_dir, threads=1)
    assert result.status == "succeeded", result.reason
    assert 1 <= result.epochs_run <= spec.train.epochs
    assert "val_loss" in result.metrics and "test_loss" in result.metrics
    bad = {k: v for k, v in result.metrics.items() if not math.isfinite(v)}
    assert not bad, f"non-finite final metrics {bad}"
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["status"] == "succeeded"
    for line in (workdir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        assert math.isfinite(rec["value"]), f"{rec['key']} at epoch {rec['step']}: {rec['value']}"
    # checkpoints on, as reglab run has them: every regularizer's state must be savable
    assert (workdir / "checkpoints" / "last.json").exists()


@pytest.mark.parametrize("combined", [False, True], ids=["alone", "combined"])
@pytest.mark.parametrize("name", regularizer_names())
def test_every_regularizer_runs_from_a_spec_to_success(name, combined, tmp_path, cache_dir):
    check_run(spec_for(name, OVERRIDES.get(name, {}), combined), tmp_path, cache_dir)


@pytest.mark.parametrize(
    ("name", "override"), EXTRA_CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(EXTRA_CASES)]
)
def test_regularizers_run_on_other_data_and_models_too(name, override, tmp_path, cache_dir):
    check_run(spec_for(name, override, combined=True), tmp_path, cache_dir)


def test_the_override_tables_name_only_known_regularizers():
    names = set(regularizer_names())
    assert set(OVERRIDES) <= names
    assert {n for n, _ in EXTRA_CASES} <= names


def test_reglab_catalog_json_lists_every_name_with_its_defaults():
    result = CliRunner().invoke(app, ["catalog", "--json"])
    assert result.exit_code == 0, result.output
    entries = json.loads(result.stdout)
    assert [e["name"] for e in entries] == regularizer_names()
    for cls, entry in zip(regularizer_spec_classes(), entries, strict=True):
        fields = {k: f for k, f in cls.model_fields.items() if k != "name"}
        assert set(entry["defaults"]) == set(fields), entry["name"]
        assert set(entry["parameters"]["properties"]) == set(fields), entry["name"]
        for key, field in fields.items():
            want = to_jsonable_python(field.get_default(call_default_factory=True))
            assert entry["defaults"][key] == want, f"{entry['name']}.{key}"
        assert entry["description"], entry["name"]
        # the listed defaults are themselves a valid entry of a spec
        spec = spec_for(entry["name"], OVERRIDES.get(entry["name"], {}), combined=False)
        parse_spec({**spec, "regularizers": [{"name": entry["name"], **entry["defaults"]}]})
