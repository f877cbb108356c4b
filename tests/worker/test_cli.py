"""`reglab serve` and `reglab reconcile` options that read or skip settings."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from reglab import server_cli as cli
from reglab.cli import app
from service.db.migrate import upgrade_to_head
from service.settings import get_settings
from worker import reconciler

runner = CliRunner()


@pytest.fixture
def env(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("REGLAB_DATABASE_URL", url)
    monkeypatch.setenv("REGLAB_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("REGLAB_BROKER_DIR", str(tmp_path / "broker"))
    monkeypatch.delenv("REGLAB_BROKER_URL", raising=False)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def test_reconcile_defaults_its_stale_after_to_the_setting(env, monkeypatch):
    upgrade_to_head(env)
    monkeypatch.setenv("REGLAB_STALE_QUEUED_SECONDS", "42")
    get_settings.cache_clear()
    seen = []
    real = reconciler.reconcile_once

    def spy(*args, **kwargs):
        seen.append(kwargs["stale_after_s"])
        return real(*args, **kwargs)

    monkeypatch.setattr(reconciler, "reconcile_once", spy)
    assert runner.invoke(app, ["reconcile"]).exit_code == 0
    assert runner.invoke(app, ["reconcile", "--stale-after", "7"]).exit_code == 0
    assert seen == [42, 7]


@pytest.mark.parametrize(("args", "migrated"), [([], True), (["--no-migrate"], False)])
def test_serve_migrates_unless_told_not_to(env, monkeypatch, args, migrated):
    import uvicorn

    calls = []
    monkeypatch.setattr(cli, "_migrate", calls.append)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)  # return at once: no server
    result = runner.invoke(app, ["serve", "--no-worker", *args])
    assert result.exit_code == 0, result.output
    assert calls == ([env] if migrated else [])
