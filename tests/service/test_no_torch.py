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
