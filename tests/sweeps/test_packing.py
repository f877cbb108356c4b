"""Packing a sweep's launched trials: the service's grouping (``service.sweeps.packing``), the
worker's regrouping by regcore's ``pack_key`` (``worker.packs.regroup``), and the messages
``POST /v1/sweeps`` sends."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from regcore.spec import parse_spec
from service.db.models import Experiment
from service.queue import PACK_TASK_NAME, TASK_NAME
from service.settings import Settings
from service.sweeps.packing import CPU_PACK_SIZE, GPU_PACK_SIZE, group, group_key, size_for
from tests.sweeps.test_api import grid


@dataclass
class Row:
    id: str
    queue: str
    spec: dict[str, Any]


def spec(seed: int = 0, strength: float = 1e-3, **train: Any) -> dict[str, Any]:
    return {
        "seed": seed,
        "data": {"name": "mnist1d", "n_train": 200, "n_val": 50, "n_test": 50},
        "model": {"name": "mlp", "hidden": [16]},
        "train": {"epochs": 2, "batch_size": 50, "lr": 0.05, "device": "cpu", **train},
        "regularizers": [{"name": "l2", "strength": strength}],
    }


def test_trials_that_share_seed_data_model_and_epochs_go_out_together_in_launch_order():
    rows = [Row(f"e{i}", "cpu", spec(seed=i % 2, strength=10.0**-i)) for i in range(6)]
    assert group(rows, None) == [(["e0", "e2", "e4"], "cpu"), (["e1", "e3", "e5"], "cpu")]


def test_packs_are_at_most_pack_size_and_1_turns_packing_off():
    rows = [Row(f"e{i}", "cpu", spec(strength=10.0**-i)) for i in range(5)]
    assert group(rows, 2) == [(["e0", "e1"], "cpu"), (["e2", "e3"], "cpu"), (["e4"], "cpu")]
    assert group(rows, 1) == [([f"e{i}"], "cpu") for i in range(5)]


def test_the_default_size_depends_on_the_queue():
    assert size_for("cpu", None) == CPU_PACK_SIZE and size_for("gpu", None) == GPU_PACK_SIZE
    assert size_for("gpu", 3) == 3
    rows = [Row(f"e{i}", "gpu", spec(strength=i / 100)) for i in range(GPU_PACK_SIZE + 1)]
    sizes = [len(ids) for ids, _ in group(rows, None)]
    assert sizes == [GPU_PACK_SIZE, 1]


def test_what_differs_in_data_model_epochs_or_queue_or_is_an_ensemble_is_not_grouped():
    base = spec()
    other_data = {**base, "data": {**base["data"], "n_train": 300}}
    other_model = {**base, "model": {"name": "mlp", "hidden": [32]}}
    other_epochs = spec(epochs=3)
    ensemble = {**base, "ensemble": {"size": 3}}
    assert group_key("cpu", ensemble) is None
    keys = {group_key("cpu", s) for s in (base, other_data, other_model, other_epochs)}
    assert len(keys) == 4 and group_key("gpu", base) != group_key("cpu", base)
    rows = [Row("a", "cpu", base), Row("b", "cpu", ensemble), Row("c", "cpu", base)]
    assert group(rows, None) == [(["a", "c"], "cpu"), (["b"], "cpu")]


def test_the_worker_splits_a_message_by_regcores_pack_key():
    from worker.packs import regroup

    specs = [
        ("a", "cpu", parse_spec(spec(strength=1e-3))),
        ("b", "cpu", parse_spec(spec(strength=1e-2, lr=0.1))),  # lr may differ per member
        ("c", "cpu", parse_spec(spec(optimizer="adam"))),  # the optimizer may not
        ("d", "cpu", parse_spec({**spec(), "regularizers": [{"name": "sam", "rho": 0.05}]})),
        ("e", "cpu", None),  # a stored spec that no longer parses: the single path fails it
        ("f", "cpu", parse_spec(spec(optimizer="adam", strength=0.1))),
    ]
    assert regroup(specs) == [
        (["a", "b"], "cpu"),
        (["c", "f"], "cpu"),
        (["d"], "cpu"),
        (["e"], "cpu"),
    ]


def _messages(settings: Settings) -> list[tuple[str, Any]]:
    """(task name, positional args) of every message in the filesystem broker's queue."""
    out = []
    for path in sorted((settings.broker_dir / "queue").iterdir()):
        msg = json.loads(path.read_text())
        body = msg["body"]
        if msg.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body).decode()
        out.append((msg["headers"]["task"], json.loads(body)[0]))
    return out


@pytest.mark.parametrize("pack_size", [None, 1])
def test_a_sweep_submit_sends_one_message_per_pack(pack_size, settings, db_url, tmp_path):
    from fastapi.testclient import TestClient

    from service.main import create_app

    settings = settings.model_copy(update={"pack_size": pack_size})
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        sweep = client.post("/v1/sweeps", json=grid(max_concurrent=6)).json()
    ids = [e["experiment_id"] for e in sweep["experiments"][:6]]
    messages = _messages(settings)
    if pack_size == 1:
        assert sorted(messages) == sorted((TASK_NAME, [i]) for i in ids)
    else:  # configuration-major, seeds inner: the seeds' data differ, so one pack per seed
        assert sorted(messages) == sorted(
            [
                (PACK_TASK_NAME, [[ids[0], ids[2], ids[4]]]),
                (PACK_TASK_NAME, [[ids[1], ids[3], ids[5]]]),
            ]
        )
    from service.db.session import make_engine, make_sessionmaker

    engine = make_engine(db_url)
    with make_sessionmaker(engine)() as s:
        stamped = s.scalars(select(Experiment.enqueued_at).where(Experiment.id.in_(ids))).all()
    engine.dispose()
    assert len(stamped) == 6 and all(t is not None for t in stamped)
