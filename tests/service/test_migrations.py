"""Alembic: upgrade to head on an empty database, and no drift between models and migrations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect

from service.db.migrate import MigrationError, alembic_config, check, upgrade_to_head
from service.db.models import Base

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    return request.getfixturevalue("postgres_url")


def test_upgrade_to_head_creates_every_table(empty_url):
    upgrade_to_head(empty_url)
    engine = create_engine(empty_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_the_models_match_the_migrations(empty_url):
    upgrade_to_head(empty_url)
    check(empty_url)  # raises alembic.util.CommandError on drift


def test_upgrading_twice_is_a_no_op(empty_url):
    upgrade_to_head(empty_url)
    upgrade_to_head(empty_url)


def test_downgrade_to_base_removes_every_table(empty_url):
    upgrade_to_head(empty_url)
    command.downgrade(alembic_config(empty_url), "base")
    engine = create_engine(empty_url)
    try:
        left = set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()
    assert left == set()


def test_alembic_check_runs_from_the_command_line(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = os.environ | {"REGLAB_DATABASE_URL": url}
    alembic = [sys.executable, "-m", "alembic"]
    subprocess.run([*alembic, "upgrade", "head"], cwd=ROOT, env=env, check=True)
    result = subprocess.run([*alembic, "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "No new upgrade operations detected" in result.stdout + result.stderr


def test_a_model_changed_without_a_migration_is_detected(tmp_path):
    url = f"sqlite:///{tmp_path / 'drift.db'}"
    upgrade_to_head(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE experiments ADD COLUMN surprise INTEGER")
    engine.dispose()
    with pytest.raises(Exception, match="New upgrade operations detected"):
        check(url)


def test_an_unreachable_database_gives_a_clear_message():
    with pytest.raises(MigrationError, match="could not migrate"):
        upgrade_to_head("postgresql+psycopg://nobody:secret@127.0.0.1:1/none")
