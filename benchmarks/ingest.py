"""Metric points per second through the worker's reporter path (``make bench``).

A pack of ``--members`` experiments (claimed by one worker) writes ``--keys`` metrics each per
epoch for ``--epochs`` epochs, on a fresh SQLite file and a fresh PostgreSQL database:

* ``pack``: ``worker.reporter.write_epochs``, the whole pack's epoch in one transaction (what a
  batched pack does): per step one lease renewal and one write of the points (on PostgreSQL one
  statement that renews the leases, stores the points and upserts ``metric_latest``);
* ``before``: the pack path as it was before that (commit 41779f7, kept below verbatim as a
  baseline): the points and ``metric_latest`` as two statements, the rows serialized twice;
* ``old``: the first ``record_epoch`` (kept below, verbatim, as the baseline), one call per
  member inside one transaction per epoch, so it pays no more commits than ``pack``;
* ``single``: ``DbReporter.on_epoch`` of one experiment, one transaction per epoch (a lone run:
  bound by the commit, not by the statements); the same ``record_epochs`` as ``pack``.

Every figure is points stored / wall time, checked against the rows actually in ``metrics``.
For ``pack`` and ``before`` it also prints the CPU time each epoch took here and, on a
PostgreSQL server on this machine, in the server's backends (``CpuMeter``): what a path costs,
whatever else the machine is running. On PostgreSQL it also prints the share of
``metric_latest``'s updates that were HOT (heap-only: no index entry, no growth; migration 0008
made them so).
``--repeat`` runs the whole set that many times, interleaved (a busy machine slows every path
alike), and reports the median of each (and the range of ``pack``). Exits non-zero when the
median ``pack`` misses ``--target`` points/s on a backend. PostgreSQL is the server at
``REGLAB_BENCH_POSTGRES_URL`` (default the test server); it is skipped, and says so, when that
server is not reachable.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

from sqlalchemy import bindparam, create_engine, func, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.db import jobs, latest  # noqa: E402
from service.db.migrate import upgrade_to_head  # noqa: E402
from service.db.models import Experiment, Metric, new_id, utcnow  # noqa: E402
from service.db.session import make_engine, make_sessionmaker  # noqa: E402
from worker.artifacts import LocalStore  # noqa: E402
from worker.reporter import DbReporter, write_epochs  # noqa: E402

PG_URL = os.environ.get(
    "REGLAB_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
WORKER = "bench-worker"
KEYS = [
    "train_loss", "val_loss", "test_loss", "train_acc", "val_acc", "test_acc", "gen_gap", "ece",
    "weight_l2", "weight_l1", "sparsity", "lr", "grad_norm", "sys_cpu", "sys_rss", "epoch_s",
]  # fmt: skip


def old_record_epoch(session, experiment_id, worker_id, step, metrics, lease_s) -> bool:
    """The path this replaced (commit 50cf402), verbatim: statements built per call."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    result = session.execute(
        update(Experiment)
        .where(
            Experiment.id == experiment_id,
            Experiment.status == "running",
            Experiment.lease_owner == worker_id,
        )
        .values(last_epoch=step, lease_expires_at=utcnow() + timedelta(seconds=lease_s))
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return False
    rows = [
        {"experiment_id": experiment_id, "key": key, "step": step, "value": float(value)}
        for key, value in metrics.items()
        if math.isfinite(float(value))
    ]
    if rows:
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        session.execute(
            insert(Metric)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["experiment_id", "key", "step"])
        )
        latest.upsert(session, experiment_id, step, metrics)
    return True


_BEFORE_RENEW = (
    update(Experiment)
    .where(
        Experiment.id.in_(bindparam("ids", expanding=True)),
        Experiment.status == "running",
        Experiment.lease_owner == bindparam("worker_id"),
    )
    .values(last_epoch=bindparam("step"), lease_expires_at=bindparam("expires"))
    .returning(Experiment.id)
)
_BEFORE_UNNEST = "SELECT * FROM unnest(%s::varchar[], %s::varchar[], %s::integer[], %s::float8[])"
_BEFORE_NEWER = (
    " ON CONFLICT (experiment_id, key) DO UPDATE SET step = excluded.step, value = excluded.value"
    " WHERE metric_latest.step <= excluded.step"
)
_BEFORE_SQL = {
    "postgresql": (
        "INSERT INTO metrics (experiment_id, key, step, value) " + _BEFORE_UNNEST
        + " ON CONFLICT (experiment_id, key, step) DO NOTHING",
        "INSERT INTO metric_latest (experiment_id, key, step, value) " + _BEFORE_UNNEST
        + _BEFORE_NEWER,
    ),
    "sqlite": (
        "INSERT INTO metrics (experiment_id, key, step, value) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (experiment_id, key, step) DO NOTHING",
        "INSERT INTO metric_latest (experiment_id, key, step, value) VALUES (?, ?, ?, ?)"
        + _BEFORE_NEWER,
    ),
}  # fmt: skip


def _before_arrays(rows):
    def quoted(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return (
        "{" + ",".join(quoted(r[0]) for r in rows) + "}",
        "{" + ",".join(quoted(r[1]) for r in rows) + "}",
        "{" + ",".join(str(int(r[2])) for r in rows) + "}",
        "{" + ",".join(repr(float(r[3])) for r in rows) + "}",
    )


def before_record_epochs(
    session: Session, worker_id: str, epochs: Sequence[jobs.EpochPoints], lease_s: float
) -> set[str]:
    """The pack path before one statement wrote both tables (commit 41779f7), verbatim but for
    its statements inlined above."""
    if not epochs:
        return set()
    conn = session.connection()
    dialect = conn.dialect.name
    expires = utcnow() + timedelta(seconds=lease_s)
    owned: set[str] = set()
    by_step: dict[int, list[str]] = defaultdict(list)
    for e in epochs:
        by_step[e.step].append(e.experiment_id)
    for step, ids in by_step.items():
        result = conn.execute(
            _BEFORE_RENEW,
            {"ids": sorted(set(ids)), "worker_id": worker_id, "step": step, "expires": expires},
        )
        owned.update(result.scalars())
    rows = [
        (e.experiment_id, key, e.step, value)
        for e in epochs
        if e.experiment_id in owned
        for key, value in ((k, float(v)) for k, v in e.metrics.items())
        if math.isfinite(value)
    ]
    if rows:
        points, upsert = _BEFORE_SQL[dialect]
        newest: dict[tuple[str, str], tuple[str, str, int, float]] = {}
        for row in rows:
            at = row[:2]
            if at not in newest or newest[at][2] <= row[2]:
                newest[at] = row
        if dialect == "postgresql":
            conn.exec_driver_sql(points, _before_arrays(rows))
            conn.exec_driver_sql(upsert, _before_arrays(list(newest.values())))
        else:
            conn.exec_driver_sql(points, rows)
            conn.exec_driver_sql(upsert, list(newest.values()))
    return owned


def running_pack(sessions: sessionmaker[Session], members: int) -> list[str]:
    ids = [new_id() for _ in range(members)]
    with sessions.begin() as s:
        for eid in ids:
            s.add(
                Experiment(
                    id=eid,
                    name="bench",
                    status="running",
                    queue="cpu",
                    spec={},
                    spec_hash="0" * 64,
                    max_attempts=3,
                    total_epochs=1000,
                    attempts=1,
                    lease_owner=WORKER,
                    lease_expires_at=utcnow() + timedelta(hours=1),
                    created_at=utcnow(),
                )  # fmt: skip
            )
    return ids


def metrics_of(eid: int, epoch: int, keys: int) -> dict[str, float]:
    return {k: 1.0 / (epoch + i + eid) for i, k in enumerate(KEYS[:keys])}


def stored(sessions: sessionmaker[Session], ids: list[str]) -> int:
    with sessions() as s:
        count = select(func.count()).select_from(Metric).where(Metric.experiment_id.in_(ids))
        return int(s.scalar(count) or 0)


class CpuMeter:
    """CPU time of the writes: this process's, and on PostgreSQL running on this machine that of
    the database's backends (``/proc/<pid>/schedstat``; the pool's connections, open before the
    first write), so a busy machine's waiting is not counted. ``server`` stays None where the
    server's processes cannot be read (another machine); SQLite runs inside this process."""

    def __init__(self, engine) -> None:
        self.client = 0.0
        self.server: float | None = None
        self.pids: list[int] = []
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                pids = conn.exec_driver_sql(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                ).scalars()
                self.pids = [int(pid) for pid in pids]
            if self._server_s() is not None:
                self.server = 0.0

    def _server_s(self) -> float | None:
        total = 0.0
        for pid in self.pids:
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() != "postgres":
                    return None
                total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
            except (OSError, ValueError, IndexError):
                return None
        return total

    def measure(self, write: Callable[[int], None]) -> Callable[[int], None]:
        def measured(epoch: int) -> None:
            server = self._server_s()
            client = time.process_time()
            write(epoch)
            self.client += time.process_time() - client
            after = self._server_s()
            if self.server is not None and server is not None and after is not None:
                self.server += after - server

        return measured


def timed(sessions, ids, epochs, keys, write: Callable[[int], None]) -> float:
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        write(epoch)
    elapsed = time.perf_counter() - start
    n = stored(sessions, ids)
    expected = len(ids) * keys * epochs
    if n != expected:
        raise SystemExit(f"stored {n} points, expected {expected}")
    return n / elapsed


def bench(url: str, members: int, keys: int, epochs: int) -> dict[str, float]:
    """One measurement of each path on the database at ``url`` (already migrated)."""
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    out: dict[str, float] = {}
    try:

        def packed(name: str, write_points: Callable[[list[jobs.EpochPoints]], set[str]]) -> None:
            ids = running_pack(sessions, members)

            def write(epoch: int) -> None:
                points = [
                    jobs.EpochPoints(eid, epoch, metrics_of(i, epoch, keys))
                    for i, eid in enumerate(ids)
                ]
                assert write_points(points) == set(ids)

            cpu = CpuMeter(engine)
            out[name] = timed(sessions, ids, epochs, keys, cpu.measure(write))
            out[f"{name} client ms"] = 1e3 * cpu.client / epochs  # CPU per epoch
            if cpu.server is not None:
                out[f"{name} server ms"] = 1e3 * cpu.server / epochs

        def before(points: list[jobs.EpochPoints]) -> set[str]:
            with sessions.begin() as s:  # write_epochs' one transaction
                return before_record_epochs(s, WORKER, points, 3600)

        packed("pack", lambda points: write_epochs(sessions, WORKER, points, 3600))
        packed("before", before)

        ids = running_pack(sessions, members)

        def old(epoch: int) -> None:
            with sessions.begin() as s:
                for i, eid in enumerate(ids):
                    ok = old_record_epoch(s, eid, WORKER, epoch, metrics_of(i, epoch, keys), 3600)
                    assert ok

        out["old"] = timed(sessions, ids, max(2, epochs // 4), keys, old)

        one = running_pack(sessions, 1)
        with tempfile.TemporaryDirectory() as tmp:
            reporter = DbReporter(
                sessions, LocalStore(tmp), one[0], WORKER, lease_s=3600, heartbeat_s=3600
            )
            out["single"] = timed(
                sessions,
                one,
                epochs * 4,
                keys,
                lambda e: reporter.on_epoch(e, metrics_of(0, e, keys)),
            )
    finally:
        engine.dispose()
    return out


def postgres_database() -> tuple[str, Callable[[], None]] | None:
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"reglab_bench_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - reported, and PostgreSQL is skipped
        print(f"PostgreSQL at {PG_URL} not reachable ({type(exc).__name__}): skipped")
        admin.dispose()
        return None

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False), drop


def oldest_other_transaction_s(url: str) -> float:
    """Age of the oldest transaction of any other session on the server: while one is open,
    PostgreSQL keeps every row version it might see, so the rows a write updates each epoch
    (``experiments``, ``metric_latest``) pile up versions that each later write walks."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            age = conn.exec_driver_sql(
                "SELECT EXTRACT(EPOCH FROM now() - min(xact_start)) FROM pg_stat_activity"
                " WHERE pid <> pg_backend_pid()"
                " AND (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL)"
            ).scalar()
    finally:
        engine.dispose()
    return float(age or 0.0)


def hot_share(url: str) -> float | None:
    """The share of ``metric_latest``'s row updates on this database that were HOT, from the
    statistics the closed connections flushed (None when there were none)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            updated, hot = conn.exec_driver_sql(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
                " WHERE relname = 'metric_latest'"
            ).one()
    finally:
        engine.dispose()
    return hot / updated if updated else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=64)
    parser.add_argument("--keys", type=int, default=16, choices=range(1, len(KEYS) + 1))
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3, help="runs of every path (median)")
    parser.add_argument("--target", type=float, default=50_000.0)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    print(
        f"ingest: {args.members} members x {args.keys} metrics per epoch, {args.epochs} epochs,"
        f" median of {args.repeat} (target: pack >= {args.target:,.0f} points/s)"
    )
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        backends: list[tuple[str, str, Callable[[], None]]] = []
        if args.backend in ("sqlite", "both"):
            backends.append(("sqlite", f"sqlite:///{tmp}/ingest.db", lambda: None))
        if args.backend in ("postgresql", "both"):
            pg = postgres_database()
            if pg is not None:
                backends.append(("postgresql", *pg))
        for name, url, cleanup in backends:
            try:
                upgrade_to_head(url)
                start = time.perf_counter()
                runs = [
                    bench(url, args.members, args.keys, args.epochs)
                    for _ in range(max(1, args.repeat))
                ]
                elapsed = time.perf_counter() - start
                held = oldest_other_transaction_s(url) if name == "postgresql" else 0.0
                hot = hot_share(url) if name == "postgresql" else None
            finally:
                cleanup()
            rates = {
                k: statistics.median(r[k] for r in runs)
                for k in runs[0]
                if all(k in r for r in runs)
            }
            packs = [r["pack"] for r in runs]
            ok = rates["pack"] >= args.target
            failed |= not ok
            print(
                f"  {name:<10} pack {rates['pack']:>9,.0f} points/s"
                f" ({min(packs):,.0f}-{max(packs):,.0f}) ·"
                f" {rates['pack'] / rates['before']:.2f}x before ({rates['before']:,.0f}) ·"
                f" {rates['pack'] / rates['old']:.1f}x the old path ({rates['old']:,.0f}) ·"
                f" single run {rates['single']:,.0f} points/s · {'ok' if ok else 'BELOW TARGET'}"
            )
            cpu = [
                f"{path} {rates[f'{path} client ms']:.1f} ms here"
                + (
                    f" + {rates[f'{path} server ms']:.1f} ms server"
                    if f"{path} server ms" in rates
                    else ""
                )
                for path in ("pack", "before")
            ]
            print(f"  {'':<10} CPU per epoch: {' · '.join(cpu)}")
            if hot is not None:
                print(f"  {'':<10} metric_latest updates that were HOT: {hot:.1%}")
            if held > elapsed:
                print(
                    f"  {'':<10} (another session's transaction, open {held:,.0f} s, spanned"
                    " the whole run: old row versions could not be cleaned up)"
                )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
