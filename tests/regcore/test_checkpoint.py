"""Checkpoints: safetensors and JSON only, loaded without pickle, damaged ones ignored."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import load_file

from regcore.training.checkpoint import load_checkpoint, save_checkpoint
from regcore.training.state import flatten, unflatten
from tests.regcore.runs import make_spec, train

SPEC = make_spec(
    train={"epochs": 2, "device": "cpu", "optimizer": "adam", "lr": 0.003, "schedule": "cosine"},
    regularizers=[{"name": "dropout", "p": 0.2}, {"name": "early_stopping", "patience": 5}],
)


@pytest.fixture
def run_dir(tmp_path, cache_dir):
    train(SPEC, tmp_path, cache_dir, checkpoint_every=1)
    return tmp_path


def test_a_run_writes_only_safetensors_and_json_checkpoints(run_dir):
    files = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert files == [
        "best.json", "best.safetensors", "best.state.safetensors",
        "last.json", "last.safetensors", "last.state.safetensors",
    ]  # fmt: skip
    side = json.loads((run_dir / "checkpoints" / "last.json").read_text())
    assert side["epoch"] == 2 and side["spec_hash"] == SPEC.spec_hash()
    weights = load_file(str(run_dir / "checkpoints" / "last.safetensors"))
    assert any(k.endswith("weight") for k in weights)


def test_loading_never_uses_pickle_or_torch_load(run_dir, monkeypatch):
    def forbidden(*a, **k):
        raise AssertionError("unpickling is not allowed")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    ckpt = load_checkpoint(run_dir / "checkpoints", "last", SPEC.spec_hash())
    assert ckpt is not None and ckpt.epoch == 2
    assert (
        "optimizer" in ckpt.train_state and ckpt.train_state["step_index"] == 10
    )  # 2 epochs of 5 batches
    # the optimizer's per-parameter state comes back with integer keys
    assert all(isinstance(k, int) for k in ckpt.train_state["optimizer"]["state"])


def test_the_loaded_weights_equal_the_saved_ones(tmp_path):
    model_state = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2)}
    train_state = {"opt": {0: {"m": torch.zeros(3)}}, "t": (1, 2.5), "s": "x", "n": None}
    save_checkpoint(tmp_path, "last", 4, model_state, train_state, {"val_loss": 0.5}, "h")
    ckpt = load_checkpoint(tmp_path, "last", "h")
    assert ckpt.epoch == 4 and ckpt.metrics == {"val_loss": 0.5}
    assert all(torch.equal(ckpt.model_state[k], v) for k, v in model_state.items())
    assert torch.equal(ckpt.train_state["opt"][0]["m"], torch.zeros(3))
    assert ckpt.train_state["t"] == (1, 2.5) and ckpt.train_state["n"] is None


def test_flatten_refuses_objects_that_would_need_pickle():
    with pytest.raises(TypeError, match="cannot checkpoint"):
        flatten({"x": object()}, {})
    tensors: dict = {}
    assert unflatten(flatten({"a": [1, torch.ones(1)]}, tensors), tensors)["a"][0] == 1


@pytest.mark.parametrize("damaged", ["last.safetensors", "last.state.safetensors", "last.json"])
def test_a_truncated_checkpoint_is_ignored(run_dir, damaged):
    path = run_dir / "checkpoints" / damaged
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert load_checkpoint(run_dir / "checkpoints", "last", SPEC.spec_hash()) is None


def test_a_corrupted_byte_or_a_missing_file_makes_the_checkpoint_ignored(run_dir):
    ckpt_dir = run_dir / "checkpoints"
    path = ckpt_dir / "last.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert load_checkpoint(ckpt_dir, "last") is None
    (ckpt_dir / "best.state.safetensors").unlink()
    assert load_checkpoint(ckpt_dir, "best") is None


def test_a_checkpoint_of_another_spec_is_ignored(run_dir):
    assert load_checkpoint(run_dir / "checkpoints", "last", "another-hash") is None
    assert load_checkpoint(run_dir / "checkpoints", "last", SPEC.spec_hash()) is not None


def test_resuming_from_a_damaged_checkpoint_starts_over(run_dir, cache_dir):
    (run_dir / "checkpoints" / "last.json").write_text("{not json")
    result = train(SPEC, run_dir, cache_dir, checkpoint_every=1, resume=True)
    assert result.status == "succeeded" and result.epochs_run == 2
