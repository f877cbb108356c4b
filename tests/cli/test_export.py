"""The trained model back from its checkpoint: regcore.load_model gives the very model training
returned, and ``reglab export`` writes TorchScript and ONNX files that compute the same outputs."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch

import regcore
from regcore.load import CheckpointMismatch
from regcore.safetensors_check import InvalidSafetensors

pytestmark = pytest.mark.timeout(300)


def spec(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "export-test",
        "data": {"name": "mnist1d", "n_train": 200, "n_val": 50, "n_test": 50},
        "model": {"name": "mlp", "hidden": [16], "batch_norm": True},
        "train": {"epochs": 2, "device": "cpu"},
        "regularizers": [{"name": "dropout", "p": 0.3}, {"name": "l2", "strength": 0.001}],
    }
    body.update(over)
    return body


def trained(tmp_path: Path, cache_dir: Path, body: dict[str, Any]) -> tuple[Any, Path]:
    """(the model training returned, its final weights on disk)."""
    result = regcore.run_experiment(
        regcore_spec(body), workdir=tmp_path / "run", cache_dir=cache_dir, threads=1
    )
    assert result.status == "succeeded"
    return result.model.eval(), tmp_path / "run" / "checkpoints" / "last.safetensors"


def regcore_spec(body: dict[str, Any]) -> Any:
    from regcore.spec import parse_spec

    return parse_spec(body)


X = torch.randn(7, 40, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    "body",
    [spec(), spec(ensemble={"members": 3, "combine": "mean_logit"})],
    ids=["single", "ensemble"],
)
def test_load_model_gives_back_the_model_training_returned(body, tmp_path, cache_dir):
    model, weights = trained(tmp_path, cache_dir, body)
    loaded = regcore.load_model(body, weights)
    assert not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(X), model(X), rtol=0, atol=0)


def test_a_checkpoint_of_another_model_or_not_safetensors_is_refused(tmp_path, cache_dir):
    _, weights = trained(tmp_path, cache_dir, spec())
    with pytest.raises(CheckpointMismatch, match="does not fit"):
        regcore.load_model(spec(model={"name": "mlp", "hidden": [32]}), weights)
    with pytest.raises(CheckpointMismatch, match="missing"):
        regcore.load_model(spec(model={"name": "mlp", "hidden": [16, 16]}), weights)
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps({"w": [1, 2, 3]}))
    with pytest.raises(InvalidSafetensors):
        regcore.load_model(spec(), evil)


@pytest.mark.slow
def test_reglab_export_through_the_api_torchscript_and_onnx(
    reglab, lab, finish, tmp_path, cache_dir
):
    body = spec()
    model, weights = trained(tmp_path, cache_dir, body)
    eid = lab.submit(body)["id"]
    finish(eid, checkpoint=weights.read_bytes())
    with torch.no_grad():
        want = model(X)

    ts = tmp_path / "model.pt"
    result = reglab("export", eid[:8], "--format", "torchscript", "-o", ts)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(ts)
    scripted = torch.jit.load(str(ts))
    with torch.no_grad():
        torch.testing.assert_close(scripted(X), want)

    ort = pytest.importorskip("onnxruntime")
    onnx_path = tmp_path / "model.onnx"
    result = reglab("export", eid, "-f", "onnx", "-o", onnx_path)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(onnx_path)  # the exporter's chatter is not on stdout
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": X.numpy()})  # a batch of 7: the batch axis is dynamic
    torch.testing.assert_close(torch.from_numpy(got), want, rtol=1e-4, atol=1e-5)


def test_reglab_export_from_a_local_run(reglab, tmp_path, cache_dir):
    body = spec(regularizers=[])
    model, weights = trained(tmp_path, cache_dir, body)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(body))
    out = tmp_path / "local.pt"
    result = reglab("export", "--from", weights, "--spec", spec_file, "-o", out)
    assert result.exit_code == 0, result.output
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(out))(X), model(X))
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(spec(model={"name": "mlp", "hidden": [64]})))
    result = reglab("export", "--from", weights, "--spec", wrong, "-o", tmp_path / "w.pt")
    assert result.exit_code == 2 and "does not fit" in result.output
