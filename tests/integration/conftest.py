"""The real parts: PostgreSQL, Redis, ``reglab serve`` (API + reconciler) and ``reglab worker``
subprocesses. Short leases (4 s) and a 1 s reconciler so that a killed worker is noticed fast."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reglab.client import RegLabClient
from service.db.migrate import upgrade_to_head
from service.db.session import make_engine, make_sessionmaker
from tests.services import (  # noqa: F401
    REDIS_URL,
    new_postgres_database,
    postgres_admin_url,
    unavailable,
)

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

LEASE_S = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a subprocess: no REGLAB_* of ours leaks in, one torch thread."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGLAB_")}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


class Proc:
    """A subprocess in its own process group, its output in a log file."""

    def __init__(self, cmd: list[str], env: dict[str, str], cwd: Path, log: Path):
        self.log = log
        self._fh = log.open("ab")
        self.popen = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=self._fh, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.popen.poll() is not None:
                raise AssertionError(f"process exited ({self.popen.returncode}):\n{self.tail()}")
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not seen in {timeout} s:\n{self.tail()}")

    def tail(self, n: int = 3000) -> str:
        return self.output()[-n:]

    def kill(self) -> None:
        """SIGKILL the whole group: no cleanup, as when a machine dies."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, timeout: float = 30.0) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._fh.close()


@pytest.fixture(scope="module")
def redis_broker() -> str:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001
        unavailable(f"Redis at {REDIS_URL} is not reachable: {type(exc).__name__}")
    client.flushdb()
    client.close()
    return REDIS_URL


class Stack:
    def __init__(self, env: dict[str, str], root: Path, api: RegLabClient, db_url: str):
        self.env = env
        self.root = root
        self.api = api
        self.sessions = make_sessionmaker(make_engine(db_url))
        self._workers: list[Proc] = []

    def start_worker(self) -> Proc:
        n = len(self._workers)
        env = {**self.env, "REGLAB_SCRATCH_DIR": str(self.root / f"scratch-{n}")}
        cmd = [PYTHON, "-m", "reglab.cli", "worker", "--queues", "cpu,gpu", "--threads", "1",
               "--no-migrate", "--name", f"test{n}@%h"]  # fmt: skip
        proc = Proc(cmd, env, ROOT, self.root / f"worker-{n}.log")
        self._workers.append(proc)
        proc.wait_for(" ready.")
        return proc

    def wait(
        self, eid: str, until: Callable[[dict[str, Any]], bool], timeout: float = 90.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            exp = self.api.get(eid)
            if until(exp):
                return exp
            if time.monotonic() > deadline:
                logs = "\n".join(w.tail(1500) for w in self._workers)
                raise AssertionError(f"timed out; experiment is {exp}\n{logs}")
            time.sleep(0.2)

    def stop_workers(self) -> None:
        for w in self._workers:
            w.stop()
        self._workers.clear()


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory,
    new_postgres_database,  # noqa: F811
    redis_broker,
    cache_dir,
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stack")
    db_url = new_postgres_database()
    upgrade_to_head(db_url)
    port = free_port()
    env = clean_env(
        REGLAB_DATABASE_URL=db_url,
        REGLAB_BROKER_URL=redis_broker,
        REGLAB_ARTIFACTS=str(root / "artifacts"),
        REGLAB_CACHE_DIR=str(cache_dir),
        REGLAB_LEASE_SECONDS=str(LEASE_S),
        REGLAB_HEARTBEAT_SECONDS="1",
        REGLAB_RECONCILE_SECONDS="1",
        REGLAB_MAX_ATTEMPTS="2",
    )
    serve = Proc(
        [PYTHON, "-m", "reglab.cli", "serve", "--port", str(port), "--log-level", "warning"],
        env, root, root / "serve.log",
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if serve.popen.poll() is not None or time.monotonic() > deadline:
            serve.stop()
            raise AssertionError(f"reglab serve did not become ready:\n{serve.tail()}")
        time.sleep(0.3)
    with RegLabClient(base) as api:
        s = Stack(env, root, api, db_url)
        try:
            yield s
        finally:
            s.stop_workers()
            serve.stop()
            s.sessions.kw["bind"].dispose()


@pytest.fixture
def workers(stack: Stack) -> Iterator[Stack]:
    """The stack, with every worker a test started stopped at its end."""
    yield stack
    stack.stop_workers()


def serve(
    cwd: Path, port: int, *args: str, env: dict[str, str] | None = None, timeout: float = 60.0
) -> Proc:
    """``reglab serve`` on ``port``, returned once /readyz answers 200 and, unless
    ``--no-worker``, its embedded Celery worker says it is ready."""
    proc = Proc(
        [PYTHON, "-m", "reglab.cli", "serve", "--port", str(port), *args],
        clean_env(**(env or {})), cwd, cwd / "serve.log",
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            proc.stop()
            raise AssertionError(f"reglab serve did not become ready:\n{proc.tail()}")
        time.sleep(0.3)
    if "--no-worker" not in args:
        proc.wait_for(" ready.", timeout=timeout)  # the embedded Celery worker
    return proc
