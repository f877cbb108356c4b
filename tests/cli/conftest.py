"""The CLI against the real app in-process (SQLite), and helpers that play the worker."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from reglab import common
from reglab.cli import app
from reglab.client import RegLabClient
from service.db.migrate import upgrade_to_head
from service.db.models import Checkpoint, Experiment, Metric
from service.db.session import make_engine, make_sessionmaker
from service.main import create_app
from service.settings import Settings

BASE_URL = "http://127.0.0.1"  # a loopback Host: the API needs no key


def tiny_spec(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "cli-test",
        "data": {"name": "mnist1d", "n_train": 200, "n_val": 50, "n_test": 50},
        "model": {"name": "mlp", "hidden": [16]},
        "train": {"epochs": 2, "device": "cpu"},
        "regularizers": [{"name": "l2", "strength": 0.001}],
    }
    body.update(over)
    return body


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    upgrade_to_head(url)
    return Settings(
        database_url=url,
        broker_dir=tmp_path / "broker",
        artifacts=str(tmp_path / "artifacts"),
        cache_dir=tmp_path / "cache",
    )


@pytest.fixture
def http(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url=BASE_URL, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def lab(http: TestClient) -> RegLabClient:
    return RegLabClient(http=http)


@pytest.fixture
def sessions(settings: Settings):
    engine = make_engine(settings.database_url)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def reglab(http: TestClient, monkeypatch) -> Callable[..., Result]:
    """``reglab(*args)``: the command line, its client talking to the in-process app."""
    monkeypatch.setattr(common, "make_client", lambda url, key: RegLabClient(http=http))
    runner = CliRunner()

    def invoke(*args: Any) -> Result:
        return runner.invoke(app, [str(a) for a in args])

    return invoke


@pytest.fixture
def finish(sessions, settings: Settings):
    """``finish(id, metrics, checkpoint=bytes)``: mark a run succeeded as a worker would, with
    metric series and optionally a stored best checkpoint; returns the checkpoint id."""

    def done(
        eid: str,
        metrics: dict[str, float] | None = None,
        series: dict[str, list[float]] | None = None,
        checkpoint: bytes | None = None,
    ) -> str | None:
        ckpt_id = None
        with sessions.begin() as s:
            row = s.get(Experiment, eid)
            row.status = "succeeded"
            row.last_epoch = row.total_epochs
            row.summary = {"epochs_run": 2, "best_epoch": 2, "metrics": metrics or {}}
            for key, values in (series or {}).items():
                s.add_all(
                    Metric(experiment_id=eid, key=key, step=i, value=v)
                    for i, v in enumerate(values, 1)
                )
            if checkpoint is not None:
                key = f"{eid}/checkpoints/best-0002.safetensors"
                stored = Path(settings.artifacts) / key
                stored.parent.mkdir(parents=True, exist_ok=True)
                stored.write_bytes(checkpoint)
                ckpt_id = hashlib.sha256(eid.encode()).hexdigest()[:32]
                s.add(
                    Checkpoint(
                        id=ckpt_id,
                        experiment_id=eid,
                        kind="best",
                        epoch=2,
                        uri=key,
                        size=len(checkpoint),
                        sha256=hashlib.sha256(checkpoint).hexdigest(),
                    )
                )
        return ckpt_id

    return done


def safetensors_bytes(n: int = 1000) -> bytes:
    """A valid safetensors file (the API serves nothing else)."""
    header = json.dumps({"w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}})
    data = bytes(i % 251 for i in range(n))
    return len(header).to_bytes(8, "little") + header.encode() + data
