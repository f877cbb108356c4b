"""Bodies are read as their JSON schema reads them: a value of the wrong JSON type is a 422 that
names the field, never quietly coerced ("3" into 3, 1 or "true" into true). The CLI's
``parse_spec`` judges a spec the same way, so one spec means one thing everywhere."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from regcore.spec import SpecError, parse_spec
from reglab.cli import app as core_cli
from tests.security.conftest import bearer, spec

pytestmark = pytest.mark.timeout(120)


def _set(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    node = out
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return out


WRONG_TYPES = [
    ("data.standardize", "true"),
    ("data.standardize", 1),
    ("model.batch_norm", 0),
    ("train.epochs", "3"),
    ("train.epochs", 3.0),
    ("train.epochs", True),
    ("train.lr", "0.1"),
    ("train.nesterov", "false"),
    ("train.betas", "0.9,0.99"),
    ("seed", "1"),
    ("name", 7),
    ("data.label_noise", "0.1"),
    ("regularizers.0.p", "0.5"),
]
WITH_DROPOUT = spec(regularizers=[{"name": "dropout", "p": 0.2}])


def _field(path: str) -> str:
    head, _, rest = path.partition(".0.")
    return f"{head}[0].{rest}" if rest else path


@pytest.mark.parametrize(("path", "value"), WRONG_TYPES)
def test_a_value_of_the_wrong_json_type_is_422_naming_the_field(client, keys, path, value):
    body = _set(WITH_DROPOUT, path, value)
    r = client.post("/v1/experiments", json=body, headers=bearer(keys["ada"]))
    assert r.status_code == 422, (path, value, r.text)
    assert r.json()["title"] == "invalid spec"
    assert _field(path) in [e["loc"] for e in r.json()["errors"]], r.json()


@pytest.mark.parametrize(("path", "value"), WRONG_TYPES)
def test_parse_spec_refuses_the_same_values_with_the_same_field(path, value):
    with pytest.raises(SpecError) as err:
        parse_spec(_set(WITH_DROPOUT, path, value))
    assert _field(path) in [e["field"] for e in err.value.errors]


def test_an_integer_is_a_number_and_an_array_fills_a_tuple(client, keys):
    body = _set(_set(spec(), "train.lr", 1), "train.betas", [0, 0.5])
    body = _set(body, "train.optimizer", "adam")
    r = client.post("/v1/experiments", json=body, headers=bearer(keys["ada"]))
    assert r.status_code == 202, r.text
    stored = r.json()["spec"]["train"]
    assert stored["lr"] == 1.0 and stored["betas"] == [0.0, 0.5]
    assert parse_spec(body).train.betas == (0.0, 0.5)


def test_an_ensemble_override_is_judged_as_strictly_as_the_spec(client, keys):
    body = spec(ensemble={"members": 2, "vary": [{"train": {"epochs": "3"}}, {}]})
    r = client.post("/v1/experiments", json=body, headers=bearer(keys["ada"]))
    assert r.status_code == 422
    assert "ensemble.vary[0].train.epochs" in r.text


def test_a_non_json_value_is_a_spec_error_not_a_crash():
    with pytest.raises(SpecError) as err:
        parse_spec(spec(name=object()))
    assert err.value.errors[0]["field"] == "spec"


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"method": "random", "trials": "3"}, "trials"),
        ({"seeds": "2"}, "seeds"),
        ({"max_concurrent": 2.0}, "max_concurrent"),
        ({"base": _set(spec(), "train.epochs", "3")}, "base.train.epochs"),
    ],
)
def test_a_sweep_body_is_read_strictly_too(client, keys, over, field):
    body = {"name": "strict", "base": spec(), "space": {"train.lr": [0.01, 0.1]}} | over
    if body.get("method") == "random":
        body["space"] = {"train.lr": {"uniform": [0.01, 0.1]}}
    r = client.post("/v1/sweeps", json=body, headers=bearer(keys["ada"]))
    assert r.status_code == 422, r.text
    assert field in [e["loc"] for e in r.json()["errors"]], r.json()


def test_reglab_run_refuses_a_string_for_a_boolean_naming_the_field(tmp_path: Path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(_set(spec(), "data.standardize", "false")))
    result = CliRunner().invoke(core_cli, ["run", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "data.standardize" in result.output
    assert not (tmp_path / "out").exists()
