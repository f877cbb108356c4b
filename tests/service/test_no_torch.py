"""The API and the client never load torch (nor the worker): they must start light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "module",
    ["service.main", "reglab.client", "reglab.cli", "reglab.submit_cli", "service.db.jobs"],
)
def test_importing_does_not_load_torch_or_the_worker(module):
    code = (
        f"import {module}, sys; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'worker')); "
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_client_does_not_import_fastapi():
    code = (
        "import reglab.client, sys; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('fastapi', 'starlette', 'sqlalchemy', 'celery')); assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_no_service_module_imports_torch_or_worker():
    import re

    pattern = re.compile(r"^\s*(from|import)\s+(torch|worker)\b")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in (ROOT / "service").rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.match(line)
    ]
    assert offenders == []


def test_the_api_serves_with_the_worker_extra_unimportable(tmp_path):
    """An API install (the `api` extra, as Dockerfile.api) has no torch: the app, the
    reconciler `reglab serve` runs and the catalog route work with torch & co. made
    unimportable."""
    code = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "sklearn", "mnist1d", "safetensors", "psutil"):
            raise ImportError(name + " is not installed (blocked)")
sys.meta_path.insert(0, Block())
from fastapi.testclient import TestClient
from service.db.migrate import upgrade_to_head
from service.main import create_app
from service.settings import Settings
import reglab.server_cli, worker.reconciler
url = "sqlite:///{tmp_path / "api.db"}"
upgrade_to_head(url)
settings = Settings(database_url=url, broker_dir={str(tmp_path / "b")!r},
                    artifacts={str(tmp_path / "a")!r})
with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
    assert c.get("/healthz").status_code == 200
    assert c.get("/v1/regularizers").status_code == 200
    spec = {{"name": "x", "data": {{"name": "moons"}}, "model": {{"name": "mlp"}}}}
    r = c.post("/v1/experiments", json=spec)
    assert r.status_code in (201, 202), r.text
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
