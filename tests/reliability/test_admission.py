"""Admission by estimated memory (issue 16): the memory bomb and the unbounded generator are
refused at submit with a 422 naming the fields, the estimate and the limit; ordinary specs pass."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from regcore import memory_estimate
from regcore.spec import SpecError, parse_spec
from service.db.migrate import upgrade_to_head
from service.main import create_app
from service.settings import Settings

BOMB = {
    "data": {"name": "mnist1d"},
    "model": {"name": "mlp", "hidden": [7000, 7000]},
    "train": {"batch_size": 1_000_000, "optimizer": "adam", "device": "cpu"},
    "ensemble": {"members": 64},
}
GENERATOR = {
    "data": {"name": "mnist1d", "n_train": 300},
    "model": {"name": "mlp", "hidden": [32]},
    "pretrain": {
        "source": {"name": "mnist1d", "n_train": 400, "n_val": 50, "n_test": 50},
        "generator": {"padding": [36, 3000000]},
    },
}
TINY = {"data": {"name": "mnist1d", "n_train": 300}, "model": {"name": "mlp", "hidden": [32]}}


@pytest.fixture
def client(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'reglab.db'}"
    upgrade_to_head(url)
    settings = Settings(
        database_url=url,
        broker_dir=tmp_path / "broker",
        artifacts=str(tmp_path / "artifacts"),
        worker_memory_bytes=16 * 10**9,
        auth="off",
    )
    app = create_app(settings)
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as c:
        yield c


def _errors(body: dict) -> list[dict[str, str]]:
    """(field, message) of a 422: problem+json ``errors: [{loc, msg}]`` or ``detail: [...]``."""
    if isinstance(body.get("errors"), list):
        return [{"field": e["loc"], "message": e["msg"]} for e in body["errors"]]
    return body["detail"]


def test_the_memory_bomb_is_estimated_far_above_a_worker_and_named_by_its_fields():
    est = memory_estimate.estimate(parse_spec(BOMB))
    # 49M parameters x 64 members x (weights, grads, 2 adam states, best copy) in float32
    assert est.parts["parameters"].bytes > 50 * 10**9
    errors = memory_estimate.check(parse_spec(BOMB), 16 * 10**9)
    fields = [e["field"] for e in errors]
    assert {"model.hidden", "ensemble.members", "train.optimizer", "train.batch_size"} <= set(
        fields
    )
    assert (
        "16.0 GB" in errors[0]["message"] and "REGLAB_WORKER_MEMORY_BYTES" in errors[0]["message"]
    )


def test_a_small_spec_fits_and_scales_with_members_batch_and_optimizer():
    small = parse_spec(TINY)
    assert memory_estimate.check(small, 2 * 10**9) == []
    base = memory_estimate.estimate(small)
    wide = {
        "data": {"name": "mnist1d", "n_train": 5000},
        "model": {"name": "mlp", "hidden": [2048]},
    }
    bigger = [
        {**wide, "ensemble": {"members": 8}},
        {**wide, "train": {"optimizer": "adam"}},
        {**wide, "train": {"batch_size": 5000}},  # above the 5000-example evaluation chunk
    ]
    plain = memory_estimate.estimate(parse_spec(wide)).total
    assert plain > base.total
    for spec in bigger:
        assert memory_estimate.estimate(parse_spec(spec)).total > plain, spec


def test_the_default_limit_comes_from_the_machine_and_the_variable_overrides_it():
    machine = memory_estimate.machine_memory()
    assert machine is not None and machine > 10**8
    assert memory_estimate.worker_memory_limit({}) == int(machine * 0.8)
    assert memory_estimate.worker_memory_limit({"REGLAB_WORKER_MEMORY_BYTES": "3e9"}) == 3 * 10**9
    with pytest.raises(ValueError, match="REGLAB_WORKER_MEMORY_BYTES"):
        memory_estimate.worker_memory_limit({"REGLAB_WORKER_MEMORY_BYTES": "lots"})


@pytest.mark.parametrize(
    ("generator", "message"),
    [
        ({"padding": [36, 3000000]}, "outside [0, 2048]"),
        ({"padding": [60, 36]}, "low <= high"),
        ({"padding": [36, 2040]}, "at most 2048"),
        ({"max_translation": 0}, "outside [1, 2048]"),
        ({"template_len": 2.5}, "integer"),
        ({"iid_noise_scale": 1e9}, "outside [0, 10]"),
    ],
)
def test_every_generator_setting_is_bounded_and_named(generator, message):
    spec = {**GENERATOR, "pretrain": {**GENERATOR["pretrain"], "generator": generator}}
    with pytest.raises(SpecError) as err:
        parse_spec(spec)
    (error,) = err.value.errors
    assert error["field"] == f"pretrain.generator.{next(iter(generator))}"
    assert message in error["message"]


def test_submit_refuses_the_bomb_and_the_unbounded_generator_with_a_422(client):
    r = client.post("/v1/experiments", json=BOMB)
    assert r.status_code == 422, r.text
    errors = _errors(r.json())
    fields = {e["field"] for e in errors}
    assert {"model.hidden", "ensemble.members", "train.batch_size"} <= fields
    assert "114.0 GB" in errors[0]["message"] and "holds 16.0 GB" in errors[0]["message"]
    r = client.post("/v1/experiments", json=GENERATOR)
    assert r.status_code == 422, r.text
    assert _errors(r.json())[0]["field"] == "pretrain.generator.padding"
    r = client.post("/v1/experiments", json=TINY)
    assert r.status_code == 202, r.text
    assert client.get(f"/v1/experiments/{r.json()['id']}").json()["status"] == "queued"


def test_a_sweep_with_a_configuration_too_big_for_a_worker_is_refused_at_that_space_path(client):
    sweep = {
        "name": "wide",
        "base": {**TINY, "ensemble": {"members": 64}, "train": {"optimizer": "adam"}},
        "method": "grid",
        "space": {"model.hidden": [[32], [7000, 7000]]},
    }
    r = client.post("/v1/sweeps", json=sweep)
    assert r.status_code == 422, r.text
    detail = _errors(r.json())
    assert detail[0]["field"] == "space.model.hidden" and "7000" in detail[0]["message"]


def test_reglab_run_refuses_the_bomb_before_training(tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from reglab.cli import app

    spec = tmp_path / "bomb.json"
    spec.write_text(json.dumps(BOMB))
    monkeypatch.setenv("REGLAB_WORKER_MEMORY_BYTES", str(16 * 10**9))
    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "model.hidden" in result.output and "16.0 GB" in result.output
    assert not (tmp_path / "out").exists()
