"""The distribution carries its migrations: a regular install (the Docker images run
``pip install .``) upgrades a database with no alembic.ini and no source checkout."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("regcore", "service", "worker", "reglab", "migrations")


def _build_wheel(tmp_path: Path) -> Path:
    # Build from a copy: the checkout's own build/ folder could hold stale files.
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    for name in PACKAGES:
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         str(src), "-w", str(tmp_path / "dist")],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("reglab-*.whl")
    return wheel


def test_the_wheel_contains_the_migrations_and_upgrades_a_fresh_database_from_an_install(
    tmp_path,
):
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    revisions = sorted(p.name for p in (ROOT / "migrations" / "versions").glob("0*.py"))
    assert revisions
    for name in ("env.py", "script.py.mako", *(f"versions/{r}" for r in revisions)):
        assert f"migrations/{name}" in names, name
    assert "alembic.ini" not in names

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    db = tmp_path / "fresh" / "reglab.db"
    code = f"""
import sys
sys.path.insert(0, {str(site)!r})
import sqlalchemy as sa
from service.db import migrate
assert migrate.__file__.startswith({str(site)!r}), migrate.__file__
url = "sqlite:///{db}"
migrate.upgrade_to_head(url)
assert str(migrate.script_location()).startswith({str(site)!r})
migrate.check(url)
print(sorted(sa.inspect(sa.create_engine(url)).get_table_names()))
"""
    # cwd outside the checkout: nothing but the unpacked wheel can supply the migrations
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    tables = out.stdout
    for table in ("alembic_version", "experiments", "metrics", "checkpoints"):
        assert f"'{table}'" in tables
