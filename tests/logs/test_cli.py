"""reglab logs ID [-f]: the lines in order, by id prefix; -f returns once the run has ended."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from reglab import common
from reglab.cli import app
from reglab.client import RegLabClient
from service.db import jobs, logs
from service.db.models import Experiment, utcnow
from service.main import create_app
from service.settings import Settings
from tests.worker.helpers import add_experiment


@pytest.fixture
def reglab(tmp_path, monkeypatch):
    from service.db.migrate import upgrade_to_head
    from service.db.session import make_engine, make_sessionmaker

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    upgrade_to_head(url)
    settings = Settings(database_url=url, broker_dir=tmp_path / "b", artifacts=str(tmp_path / "a"))
    engine = make_engine(url)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as http:
        monkeypatch.setattr(common, "make_client", lambda url, key: RegLabClient(http=http))
        runner = CliRunner()
        yield (lambda *args: runner.invoke(app, list(args))), make_sessionmaker(engine)
    engine.dispose()


def _ended_run(sessions, *messages: str) -> str:
    eid = add_experiment(sessions)
    with sessions.begin() as s:
        attempt = jobs.claim(s, eid, "w1", 30).attempts
        lines = [logs.LogLine("INFO", "worker.tasks", m) for m in messages]
        assert logs.append(s, eid, "w1", attempt, lines, 100)
        assert jobs.finish(s, eid, "w1", "succeeded")
        s.get(Experiment, eid).finished_at = utcnow() - timedelta(seconds=60)
    return eid


def test_logs_prints_each_line_in_order_by_prefix(reglab):
    invoke, sessions = reglab
    eid = _ended_run(sessions, "claimed", "epoch 1", "experiment succeeded")
    result = invoke("logs", eid[:10])
    assert result.exit_code == 0, result.output
    out = result.stdout.splitlines()
    assert [line.split(None, 3)[-1] for line in out] == [
        "claimed",
        "epoch 1",
        "experiment succeeded",
    ]
    assert all(" INFO " in line for line in out)
    items = json.loads(invoke("logs", eid, "-o", "json", "--since", "1").stdout)["items"]
    assert [(i["seq"], i["message"]) for i in items] == [
        (2, "epoch 1"),
        (3, "experiment succeeded"),
    ]


def test_logs_follow_returns_when_the_run_has_ended(reglab):
    invoke, sessions = reglab
    eid = _ended_run(sessions, "a", "b")
    result = invoke("logs", eid, "-f", "-o", "json")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["message"] for line in result.stdout.splitlines()] == ["a", "b"]


def test_logs_of_an_unknown_id_exits_1(reglab):
    invoke, _ = reglab
    result = invoke("logs", "f" * 32)
    assert result.exit_code == 1 and "404" in result.output  # not found, as every API error
