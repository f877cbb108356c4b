"""Fault tests: the real API (``reglab serve``), PostgreSQL, Redis and ``reglab worker``
subprocesses, broken on purpose.

Nothing here disturbs the machine's shared servers: each test gets its own ``redis-server`` on a
free port (restarted at will), a fresh database on the shared PostgreSQL (or, for the database
restart, a private PostgreSQL cluster), its own artifact store and scratch folders.

Who wrote what is recorded by the database itself: triggers (installed only in these test
databases) copy every change of an experiment row, every metric and checkpoint row into
``fault_audit`` with the writing connection's ``application_name`` (a worker names its
connections after its worker id) and the lease owner as the writing transaction saw it.

Each test leaves its figures in ``var/reports/faults-<name>.json`` (``$REGLAB_REPORTS_DIR``);
``scripts/faults_report.py`` turns them into ``docs/reliability.md``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from reglab.client import RegLabClient
from service.db.migrate import upgrade_to_head
from service.db.session import make_engine, make_sessionmaker
from tests.integration.conftest import PYTHON, ROOT, Proc, clean_env, free_port
from tests.services import (  # noqa: F401
    in_ci,
    new_postgres_database,
    postgres_admin_url,
    unavailable,
)

HOOKS = Path(__file__).resolve().parent / "hooks"
TERMINAL = ("succeeded", "failed", "cancelled")
REPORTS = Path(os.environ.get("REGLAB_REPORTS_DIR", ROOT / "var" / "reports"))


def tiny_spec(seed: int = 0, epochs: int = 6, n_train: int = 600, batch_size: int = 20,
              hidden: tuple[int, ...] = (32,), name: str = "fault") -> dict[str, Any]:  # fmt: skip
    return {
        "name": name,
        "seed": seed,
        "data": {"name": "mnist1d", "n_train": n_train, "n_val": 100, "n_test": 100},
        "model": {"name": "mlp", "hidden": list(hidden)},
        "train": {"lr": 0.05, "batch_size": batch_size, "epochs": epochs, "device": "cpu"},
        "regularizers": [{"name": "l2", "strength": 0.0005}],
    }


# --- private servers --------------------------------------------------------------------------


class PrivateRedis:
    """A ``redis-server`` of this test's own, without persistence (as scripts/ensure-services.sh
    runs the shared one): a restart forgets every message."""

    def __init__(self, root: Path):
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            unavailable("redis-server is not installed")
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    def start(self) -> None:
        cmd = [str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "no", "--dir", str(self.root)]  # fmt: skip
        log = (self.root / "redis.log").open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        self._wait(up=True)

    def kill(self) -> None:
        """SIGKILL: the server dies with its queues, as a crashed or rescheduled pod does."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self._wait(up=False)

    def restart(self, down_s: float = 0.0) -> None:
        self.kill()
        time.sleep(down_s)
        self.start()
        self.restarts += 1

    def _ping(self) -> bool:
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def _wait(self, up: bool, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self._ping() != up:
            if time.monotonic() > deadline:
                raise AssertionError(f"redis on {self.port} did not go {'up' if up else 'down'}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def _pg_bin() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for path in candidates:
        if (path / "initdb").exists() and (path / "pg_ctl").exists():
            return path
    found = shutil.which("pg_ctl")
    return Path(found).parent if found and shutil.which("initdb") else None


class PrivatePostgres:
    """A PostgreSQL cluster of this test's own (``initdb`` + ``pg_ctl``) on a free port, to stop
    and start without touching the shared server. initdb refuses root: as root, the cluster
    belongs to the ``postgres`` user."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        # not under pytest's tmp_path: that is private to root, the server's user must enter it
        self.root = Path(tempfile.mkdtemp(prefix="reglab-faults-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres", "postgres")
        self.admin_url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/reglab"
        self.restarts = 0

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run([*self.as_user, *args], check=True, timeout=timeout,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip

    def init(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "--no-sync", "-E", "UTF8")  # fmt: skip
        self.start()
        engine = make_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("CREATE DATABASE reglab"))
        engine.dispose()

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options,
                  "-l", str(self.root / "server.log"), "-w", "start")  # fmt: skip

    def stop(self, mode: str = "immediate") -> None:
        """``immediate``: every backend is killed without a checkpoint, as in a crash; the
        next start replays the WAL."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    bindir = _pg_bin()
    if bindir is None:
        unavailable("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    assert bindir is not None
    try:
        server = PrivatePostgres(bindir)
    except LookupError:  # root, but no ``postgres`` user to own the cluster
        unavailable("running as root without a 'postgres' user: initdb cannot run")
    try:
        server.init()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        output = getattr(exc, "stdout", b"") or str(exc).encode()
        server.destroy()
        unavailable(f"a private PostgreSQL cluster could not start: {output.decode()[-500:]}")
    yield server
    server.destroy()


# --- the audit ---------------------------------------------------------------------------------

AUDIT_SQL = """
CREATE TABLE fault_audit (
    seq bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    tbl text NOT NULL,
    experiment_id text NOT NULL,
    writer text NOT NULL,
    owner_before text,
    owner_after text,
    status_before text,
    status_after text,
    step integer,
    key text
);
CREATE FUNCTION fault_audit_experiment() RETURNS trigger AS $$
BEGIN
    INSERT INTO fault_audit (tbl, experiment_id, writer, owner_before, owner_after,
                             status_before, status_after, step)
    VALUES ('experiments', NEW.id, current_setting('application_name'), OLD.lease_owner,
            NEW.lease_owner, OLD.status, NEW.status, NEW.last_epoch);
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER fault_audit_experiment AFTER UPDATE ON experiments
    FOR EACH ROW EXECUTE FUNCTION fault_audit_experiment();
CREATE FUNCTION fault_audit_metric() RETURNS trigger AS $$
BEGIN
    INSERT INTO fault_audit (tbl, experiment_id, writer, owner_after, step, key)
    SELECT 'metrics', NEW.experiment_id, current_setting('application_name'), e.lease_owner,
           NEW.step, NEW.key
    FROM experiments e WHERE e.id = NEW.experiment_id;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER fault_audit_metric AFTER INSERT ON metrics
    FOR EACH ROW EXECUTE FUNCTION fault_audit_metric();
CREATE FUNCTION fault_audit_checkpoint() RETURNS trigger AS $$
BEGIN
    INSERT INTO fault_audit (tbl, experiment_id, writer, owner_after, step, key)
    SELECT 'checkpoints', NEW.experiment_id, current_setting('application_name'), e.lease_owner,
           NEW.epoch, NEW.kind
    FROM experiments e WHERE e.id = NEW.experiment_id;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER fault_audit_checkpoint AFTER INSERT OR UPDATE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION fault_audit_checkpoint();
"""


def install_audit(db_url: str) -> None:
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(AUDIT_SQL)
    engine.dispose()


class Audit:
    """What the audit table says about who ran each experiment."""

    def __init__(self, rows: list[dict[str, Any]]):
        self.rows = rows

    @staticmethod
    def _worker(name: str | None) -> bool:
        # the API and the reconciler leave application_name empty; a worker sets its id
        return bool(name)

    def claims(self, experiment_id: str | None = None) -> list[dict[str, Any]]:
        return [
            r
            for r in self.rows
            if r["tbl"] == "experiments"
            and r["owner_after"]
            and r["owner_after"] != r["owner_before"]
            and (experiment_id is None or r["experiment_id"] == experiment_id)
        ]

    def writers(self, experiment_id: str) -> list[str]:
        """The workers that wrote to an experiment, in the order of their first write."""
        seen: list[str] = []
        for r in self.rows:
            if r["experiment_id"] == experiment_id and self._worker(r["writer"]):
                if r["writer"] not in seen:
                    seen.append(r["writer"])
        return seen

    def violations(self) -> list[str]:
        """Every write a worker made while it did not hold the lease, and every write between
        one worker's claim and the next claim that came from another worker."""
        problems = []
        holder: dict[str, str | None] = {}
        for r in self.rows:
            eid, writer = r["experiment_id"], r["writer"]
            is_claim = (
                r["tbl"] == "experiments"
                and r["owner_after"]
                and r["owner_after"] != r["owner_before"]
            )
            if is_claim:
                if writer != r["owner_after"][:63]:
                    problems.append(f"seq {r['seq']}: {writer!r} claimed for {r['owner_after']}")
                holder[eid] = r["owner_after"][:63]
                continue
            if not self._worker(writer):
                if r["tbl"] != "experiments":
                    problems.append(f"seq {r['seq']}: {r['tbl']} row written by a non-worker")
                continue
            owner = r["owner_before"] if r["tbl"] == "experiments" else r["owner_after"]
            if (owner or "")[:63] != writer:
                problems.append(
                    f"seq {r['seq']}: {writer} wrote {r['tbl']} of {eid} while {owner} held it"
                )
            if holder.get(eid) != writer:
                problems.append(
                    f"seq {r['seq']}: {writer} wrote {r['tbl']} of {eid} after "
                    f"{holder.get(eid)} claimed it"
                )
        return problems


# --- the stack ----------------------------------------------------------------------------------


class FaultStack:
    """``reglab serve`` (API + reconciler, no embedded worker) and workers started on demand."""

    def __init__(self, root: Path, db_url: str, broker_url: str, cache_dir: Path,
                 lease_s: int = 4, max_attempts: int = 3, **settings: str):  # fmt: skip
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.db_url = db_url
        self.lease_s = lease_s
        self.env = clean_env(
            REGLAB_DATABASE_URL=db_url,
            REGLAB_BROKER_URL=broker_url,
            REGLAB_ARTIFACTS=str(root / "artifacts"),
            REGLAB_CACHE_DIR=str(cache_dir),
            REGLAB_LEASE_SECONDS=str(lease_s),
            REGLAB_HEARTBEAT_SECONDS="1",
            REGLAB_RECONCILE_SECONDS="1",
            REGLAB_MAX_ATTEMPTS=str(max_attempts),
            **{f"REGLAB_{k.upper()}": v for k, v in settings.items()},
        )
        self.engine = make_engine(db_url)
        self.sessions = make_sessionmaker(self.engine)
        self.workers: list[Proc] = []
        self.serve: Proc | None = None
        self.api: RegLabClient | None = None
        self.base = ""

    # processes

    def start_api(self, timeout: float = 60.0) -> RegLabClient:
        port = free_port()
        self.serve = Proc(
            [PYTHON, "-m", "reglab.cli", "serve", "--port", str(port), "--no-worker",
             "--log-level", "info"],
            self.env, self.root, self.root / "serve.log",
        )  # fmt: skip
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.serve.popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"reglab serve did not become ready:\n{self.serve.tail()}")
            time.sleep(0.2)
        self.api = RegLabClient(self.base)
        return self.api

    def start_worker(self, scratch: str | None = None, hooks: dict[str, str] | None = None,
                     wait: bool = True) -> Proc:  # fmt: skip
        """A ``reglab worker``; ``hooks`` (``REGLAB_FAULT_*`` variables) load the fault
        injection in tests/faults/hooks/sitecustomize.py into it."""
        n = len(self.workers)
        env = {**self.env, "REGLAB_SCRATCH_DIR": str(self.root / (scratch or f"scratch-{n}"))}
        if hooks:
            env.update(hooks)
            env["PYTHONPATH"] = f"{HOOKS}{os.pathsep}{env['PYTHONPATH']}"
        cmd = [PYTHON, "-m", "reglab.cli", "worker", "--queues", "cpu,gpu", "--threads", "1",
               "--no-migrate", "--name", f"fault{n}@%h"]  # fmt: skip
        proc = Proc(cmd, env, ROOT, self.root / f"worker-{n}.log")
        self.workers.append(proc)
        if wait:
            proc.wait_for(" ready.", timeout=90)
        return proc

    def logs(self) -> str:
        parts = [f"--- {w.log.name}\n{w.tail(2500)}" for w in self.workers]
        if self.serve is not None:
            parts.append(f"--- serve.log\n{self.serve.tail(2500)}")
        return "\n".join(parts)

    def close(self) -> None:
        for w in self.workers:
            try:
                os.killpg(w.popen.pid, signal.SIGCONT)  # a paused one cannot stop otherwise
            except ProcessLookupError:
                pass
            w.stop(timeout=10)
        if self.api is not None:
            self.api.close()
        if self.serve is not None:
            self.serve.stop(timeout=10)
        self.engine.dispose()

    # the database, read directly (cheaper than the API while polling)

    def query(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text(sql), params)]

    def experiments(self) -> dict[str, dict[str, Any]]:
        rows = self.query(
            "SELECT id, status, attempts, last_epoch, total_epochs, lease_owner, error, summary "
            "FROM experiments"
        )
        return {r["id"]: r for r in rows}

    def wait_until(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.logs()}")
            time.sleep(0.1)

    def wait_terminal(self, ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
        def done() -> dict[str, dict[str, Any]] | None:
            rows = self.experiments()
            return rows if all(rows[i]["status"] in TERMINAL for i in ids) else None

        return self.wait_until(done, timeout, f"{len(ids)} experiment(s) to end")

    def audit(self) -> Audit:
        return Audit(self.query("SELECT * FROM fault_audit ORDER BY seq"))

    def duplicated_metric_points(self) -> int:
        rows = self.query(
            "SELECT count(*) AS n FROM (SELECT 1 FROM metrics GROUP BY experiment_id, key, step "
            "HAVING count(*) > 1) d"
        )
        return int(rows[0]["n"])

    def metric_series(self, experiment_id: str) -> dict[str, list[tuple[int, float]]]:
        out: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for r in self.query(
            "SELECT key, step, value FROM metrics WHERE experiment_id = :id ORDER BY key, step",
            id=experiment_id,
        ):
            out[r["key"]].append((r["step"], r["value"]))
        return dict(out)


def make_stack(root: Path, db_url: str, broker_url: str, cache_dir: Path, **kw: Any) -> FaultStack:
    upgrade_to_head(db_url)
    install_audit(db_url)
    return FaultStack(root, db_url, broker_url, cache_dir, **kw)


@pytest.fixture
def stack_factory(tmp_path: Path, cache_dir: Path) -> Iterator[Callable[..., FaultStack]]:
    made: list[FaultStack] = []

    def make(db_url: str, broker_url: str, **kw: Any) -> FaultStack:
        s = make_stack(tmp_path / "stack", db_url, broker_url, cache_dir, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


# --- references and figures ---------------------------------------------------------------------


def reference_run(spec: dict[str, Any], workdir: Path, cache_dir: Path) -> tuple[Any, dict]:
    """The same spec run in this process, uninterrupted: its result and its metric series."""
    from regcore.experiment import run as run_experiment
    from regcore.spec import parse_spec

    result = run_experiment(parse_spec(spec), workdir=workdir, cache_dir=cache_dir, threads=1)
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for line in (workdir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        series[rec["key"]].append((int(rec["step"]), rec["value"]))
    return result, dict(series)


def assert_same_as_uninterrupted(spec: dict[str, Any], series: dict[str, list[tuple[int, float]]],
                                 summary: dict[str, Any], epochs: int, workdir: Path,
                                 cache_dir: Path) -> None:  # fmt: skip
    """A run that went through a fault stored every step once (1..epochs, for each metric) and
    ended as the same spec run here uninterrupted: the same validation curve and final metrics."""
    assert {k: [s for s, _ in v] for k, v in series.items()} == {
        k: list(range(1, epochs + 1)) for k in series
    }
    reference, reference_series = reference_run(spec, workdir, cache_dir)
    assert series["val_loss"] == reference_series["val_loss"]
    for key, value in reference.metrics.items():
        assert summary["metrics"][key] == pytest.approx(value, rel=1e-9, abs=1e-12)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    rep = yield
    if rep.when == "call" or (rep.when == "setup" and not rep.passed):
        item.stash[_OUTCOME] = rep.outcome
    return rep


_OUTCOME = pytest.StashKey[str]()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """A dict the test fills; written (with the outcome and wall time) to
    ``var/reports/faults-<name>.json`` whatever happens."""
    name = request.node.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    data: dict[str, Any] = {"scenario": name, "test": request.node.name}
    start = time.monotonic()
    yield data
    data["wall_s"] = round(time.monotonic() - start, 1)
    data["outcome"] = request.node.stash.get(_OUTCOME, "error")
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / f"faults-{name}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")


__all__ = [
    "FaultStack",
    "PrivatePostgres",
    "PrivateRedis",
    "TERMINAL",
    "assert_same_as_uninterrupted",
    "in_ci",
    "reference_run",
    "tiny_spec",
]
