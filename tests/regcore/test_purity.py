"""regcore is a library: it imports nothing from the service, the worker or web frameworks."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import regcore

FORBIDDEN = (
    "service",
    "worker",
    "reglab",
    "fastapi",
    "celery",
    "sqlalchemy",
    "starlette",
    "uvicorn",
)
ROOT = Path(regcore.__file__).resolve().parent


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_regcore_file_imports_the_service_worker_or_web_stack():
    offenders = []
    files = sorted(ROOT.rglob("*.py"))
    assert len(files) > 10
    for path in files:
        for name in _imported_modules(path):
            if name.split(".")[0] in FORBIDDEN:
                offenders.append(f"{path.relative_to(ROOT.parent)} imports {name}")
    assert not offenders, offenders


def test_importing_the_training_loop_loads_none_of_them():
    code = (
        "import sys, regcore.training.loop, regcore.regularizers.registry, regcore.load\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_regcore_never_reads_the_environment():
    offenders = [
        str(p.relative_to(ROOT.parent))
        for p in ROOT.rglob("*.py")
        if "os.environ" in p.read_text() or "getenv" in p.read_text()
    ]
    assert not offenders, offenders
