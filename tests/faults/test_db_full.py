"""Scenario: the database's disk fills up while a run trains, then space is freed.

The test database lives in a tablespace of its own on a small tmpfs; at epoch 3 a filler file
takes every free byte of it, so PostgreSQL can extend no table or index of that database (the
server's WAL is elsewhere and goes on): a write that needs a new page fails with SQLSTATE 53100,
"could not extend file ...: No space left on device", the error a full disk gives. After a few
seconds the filler is deleted. The product must treat the full disk as an outage to wait out
(``service.db.outage``): the worker retries (``retry_db``) and the run succeeds in its first
attempt with every acknowledged point kept once; the API answers a write it cannot store with
503 problem+json ("the database is full"), never 500.

Needs root and tmpfs mounts (the test mounts one): in CI their absence is a failure."""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from service.db.session import make_engine
from tests.faults.conftest import PrivateRedis, assert_same_as_uninterrupted, tiny_spec
from tests.services import unavailable

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

EPOCHS = 30
FULL_S = 8.0
FS_MB = 64  # a fresh database's catalogs take ~8 MB


def _admin(admin_url: str, *statements: str) -> None:
    engine = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for sql in statements:
                conn.execute(text(sql))
    finally:
        engine.dispose()


@contextlib.contextmanager
def _small_filesystem() -> Iterator[Path]:
    """A tmpfs of FS_MB owned by the server's user (it holds a tablespace), under /tmp: the
    server must reach it, and pytest's folders are root's alone."""
    if os.geteuid() != 0:
        unavailable("mounting a small filesystem for the database needs root")
    try:
        owner = pwd.getpwnam("postgres")
    except KeyError:
        unavailable("no 'postgres' user to own the tablespace")
    path = Path(tempfile.mkdtemp(prefix="reglab-pgspace-", dir="/tmp"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={FS_MB}m,mode=0700", "tmpfs", str(path)],
        capture_output=True, text=True,
    )  # fmt: skip
    if mounted.returncode != 0:
        unavailable(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        os.chown(path, owner.pw_uid, owner.pw_gid)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
        with contextlib.suppress(OSError):
            path.rmdir()


def _fill(path: Path) -> Path:
    """Take every free byte of the filesystem at ``path``; returns the filler file."""
    filler = path / "filler"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (1 << 20, 4096):
            block = b"\0" * chunk
            try:
                while True:
                    f.write(block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    assert os.statvfs(path).f_bavail == 0
    return filler


def test_a_database_whose_disk_fills_mid_run_pauses_the_run_and_loses_nothing(
    stack_factory, new_postgres_database, postgres_admin_url: str,
    private_redis: PrivateRedis, tmp_path: Path, cache_dir: Path, figures: dict,
):  # fmt: skip
    db_url = new_postgres_database()
    database = make_url(db_url).database
    assert database
    space = f"reglab_full_{uuid.uuid4().hex[:8]}"
    with _small_filesystem() as mount:
        _admin(
            postgres_admin_url,
            f"CREATE TABLESPACE {space} LOCATION '{mount}'",
            f'ALTER DATABASE "{database}" SET TABLESPACE {space}',
        )
        try:
            _scenario(stack_factory, db_url, private_redis, mount, tmp_path, cache_dir, figures)
        finally:
            _admin(
                postgres_admin_url,
                f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)',
                f"DROP TABLESPACE IF EXISTS {space}",
            )


def _scenario(stack_factory, db_url: str, private_redis: PrivateRedis, mount: Path,
              tmp_path: Path, cache_dir: Path, figures: dict) -> None:  # fmt: skip
    # a lease longer than the full spell: the worker waits it out instead of giving up
    stack = stack_factory(db_url, private_redis.url, lease_s=30)
    try:
        api = stack.start_api()
        worker = stack.start_worker()
        spec = tiny_spec(epochs=EPOCHS, batch_size=10, name="disk-full")
        eid = api.submit(spec)["id"]
        stack.wait_until(lambda: api.get(eid)["progress"]["epoch"] >= 3, 90, "epoch 3")
        serve_pid, worker_pid = stack.serve.popen.pid if stack.serve else None, worker.popen.pid

        filler = _fill(mount)
        started = time.monotonic()
        writes: list[int] = []
        accepted: list[str] = []
        while time.monotonic() - started < FULL_S:
            r = httpx.post(f"{stack.base}/v1/experiments", json=tiny_spec(epochs=2, name="full"),
                           timeout=30)  # fmt: skip
            writes.append(r.status_code)
            if r.status_code == 202:
                accepted.append(r.json()["id"])
            elif r.status_code == 503:
                body = r.json()
                assert body["title"] == "not ready", body
                assert body["detail"] == "the database is full; retry shortly", body
                assert r.headers["retry-after"].isdigit()
            time.sleep(0.5)
        epoch_while_full = stack.experiments()[eid]["last_epoch"]
        acknowledged = api.metrics(eid, max_points=1000)
        acked = {(k, p["step"]): p["value"] for k, points in acknowledged.items() for p in points}
        filler.unlink()
        full_s = time.monotonic() - started

        runs = [eid, *accepted]
        done = stack.wait_terminal(runs, timeout=180)
        series = stack.metric_series(eid)
        stored = {(key, step): value for key, points in series.items() for step, value in points}
        lost = [k for k, v in acked.items() if stored.get(k) != v]
        figures.update(
            experiments=len(runs),
            full_s=round(full_s, 1),
            writes_while_full=len(writes),
            answered_202=writes.count(202),
            answered_503=writes.count(503),
            server_errors_other_than_503=sum(s >= 500 and s != 503 for s in writes),
            epoch_while_full=epoch_while_full,
            worker_full_retry_episodes=worker.output().count("database full while"),
            status=done[eid]["status"],
            attempts=done[eid]["attempts"],
            others_succeeded=sum(done[r]["status"] == "succeeded" for r in runs[1:]),
            acknowledged_metric_points=len(acked),
            lost=len(lost),
            duplicated_metric_points=stack.duplicated_metric_points(),
        )

        assert writes and all(s in (202, 503) for s in writes), writes
        assert figures["worker_full_retry_episodes"] >= 1, "the worker never met a full disk"
        assert epoch_while_full < EPOCHS, "the run ended before the disk was full"
        # nothing restarted: the same API and worker processes, the run's first attempt
        assert stack.serve is not None and stack.serve.popen.pid == serve_pid
        assert stack.serve.popen.poll() is None and worker.popen.poll() is None
        assert worker.popen.pid == worker_pid
        assert done[eid]["status"] == "succeeded" and done[eid]["attempts"] == 1, done[eid]
        assert all(done[r]["status"] == "succeeded" for r in runs), done  # every 202 ran
        assert acked and not lost, lost
        assert figures["duplicated_metric_points"] == 0
        assert_same_as_uninterrupted(spec, series, done[eid]["summary"], EPOCHS,
                                     tmp_path / "ref", cache_dir)  # fmt: skip
        assert stack.audit().violations() == []
    finally:
        stack.close()
