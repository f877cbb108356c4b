"""Shared bits of the worker tests: a migrated database, rows, a worker context."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from regcore.spec import parse_spec
from service.db.models import Experiment, new_id, utcnow
from service.db.session import make_engine, make_sessionmaker
from service.settings import Settings
from worker.artifacts import LocalStore
from worker.context import WorkerContext


def tiny_spec(**train: Any) -> dict[str, Any]:
    spec = {
        "name": "tiny",
        "seed": 0,
        "data": {"name": "mnist1d", "n_train": 300, "n_val": 100, "n_test": 100},
        "model": {"name": "mlp", "hidden": [32]},
        "train": {"optimizer": "sgd", "lr": 0.1, "batch_size": 50, "epochs": 3, "device": "cpu"},
        "regularizers": [{"name": "l2", "strength": 0.001}],
    }
    spec["train"].update(train)
    return parse_spec(spec).model_dump(mode="json")


def add_experiment(sessions, spec: dict[str, Any] | None = None, **fields: Any) -> str:
    spec = spec or tiny_spec()
    row = Experiment(
        id=new_id(),
        name=spec.get("name", "tiny"),
        status="queued",
        queue="cpu",
        spec=spec,
        spec_hash="0" * 64,  # not read by the worker; the stored spec may be invalid
        max_attempts=3,
        total_epochs=spec["train"]["epochs"],
        created_at=utcnow() - timedelta(seconds=60),
        **fields,
    )
    with sessions.begin() as session:
        session.add(row)
    return row.id


def make_ctx(url: str, tmp_path: Path, cache_dir: Path, worker_id: str, **settings: Any):
    settings.setdefault("lease_seconds", 30)
    settings.setdefault("heartbeat_seconds", 5)
    settings.setdefault("worker_isolation", "inline")  # these tests patch the job in-process
    settings.setdefault("worker_heartbeat_file", tmp_path / f"alive-{worker_id}")
    s = Settings(
        database_url=url, artifacts=str(tmp_path / "artifacts"), cache_dir=cache_dir, **settings
    )
    engine = make_engine(url)
    return WorkerContext(
        settings=s,
        engine=engine,
        sessions=make_sessionmaker(engine),
        store=LocalStore(tmp_path / "artifacts"),
        worker_id=worker_id,
        scratch=tmp_path / f"scratch-{worker_id}",
        threads=1,
    )


def diverging_spec() -> dict[str, Any]:
    """Regression at lr 10: the loss becomes infinite within two epochs."""
    spec = {
        "name": "diverges",
        "seed": 0,
        "data": {"name": "toy1d", "n_train": 100, "n_val": 50, "n_test": 50},
        "model": {"name": "mlp", "hidden": [32], "activation": "relu"},
        "train": {"optimizer": "sgd", "lr": 10.0, "batch_size": 50, "epochs": 5, "device": "cpu"},
    }
    return parse_spec(spec).model_dump(mode="json")
