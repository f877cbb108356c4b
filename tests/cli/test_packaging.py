"""What each install brings: torch only with the worker extra, and each install's commands work
with what the others bring made unimportable."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = PROJECT["optional-dependencies"]


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower()


def closure(*extras: str) -> set[str]:
    """Every distribution an install with ``extras`` brings (following ``reglab[...]``)."""
    names = {_name(r) for r in PROJECT["dependencies"]}
    todo = list(extras)
    seen: set[str] = set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for req in EXTRAS[extra]:
            if _name(req) == "reglab":
                todo += re.search(r"\[(.*)\]", req).group(1).split(",")
            else:
                names.add(_name(req))
    return names


def test_torch_comes_with_the_worker_extra_only():
    assert "torch" not in closure()
    assert "torch" not in closure("client")
    assert "torch" not in closure("api", "s3")
    assert "torch" in closure("worker")
    assert {"fastapi", "sqlalchemy", "celery"} <= closure("api")
    assert not {"fastapi", "sqlalchemy", "celery", "numpy", "pydantic"} & closure("client")


def test_dev_is_everything():
    everything = closure(*(e for e in EXTRAS if e not in ("dev", "gpu")))
    assert everything <= closure("dev")
    assert "'.[dev]'" in (ROOT / "Makefile").read_text()


def test_the_images_install_their_extra():
    api = (ROOT / "Dockerfile.api").read_text()
    worker = (ROOT / "Dockerfile.worker").read_text()
    assert "'.[api,s3]'" in api and "download.pytorch.org" not in api
    assert 'python -c "import torch"' in api  # the build fails if torch came along anyway
    assert "'.[worker,s3]'" in worker


BLOCK = """
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed (blocked)")
sys.meta_path.insert(0, Block())
sys.argv = ["reglab", *sys.argv[2:]]
from reglab.cli import app
app()
"""

#: what the worker extra adds to the api extra
WORKER_ONLY = ["torch", "sklearn", "mnist1d", "safetensors", "psutil"]
#: what the api extra adds to the core
API_ONLY = ["fastapi", "starlette", "sqlalchemy", "celery", "kombu", "redis", "alembic",
            "psycopg", "pydantic_settings", "numpy", "scipy", "matplotlib", "pyarrow",
            "uvicorn", "prometheus_client", "pandas"]  # fmt: skip


def reglab_without(blocked: list[str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCK, ",".join(blocked), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "args", [["--help"], ["ls", "--help"], ["sweeps", "show", "--help"], ["--version"]]
)
def test_a_client_install_runs_the_commands(args):
    done = reglab_without(API_ONLY + WORKER_ONLY, *args)
    assert done.returncode == 0, done.stderr


def test_a_client_install_reaches_the_api_with_httpx_alone():
    done = reglab_without(API_ONLY + WORKER_ONLY, "ls", "--api-url", "http://127.0.0.1:1")
    assert done.returncode == 1 and "cannot reach the RegLab API at http://127.0.0.1:1" in (
        done.stderr
    )


def test_reglab_run_without_the_worker_extra_says_what_to_install(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text('{"name": "x", "data": {"name": "moons"}, "model": {"name": "mlp"}}')
    done = reglab_without(WORKER_ONLY, "run", str(spec), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert "pip install 'reglab[worker]'" in " ".join(done.stderr.split())
