"""A bounded loopback load on a real ``reglab serve`` (SQLite and PostgreSQL).

``--clients`` concurrent clients (default 50) for ``--seconds`` (default 15) each loop over
``GET /v1/experiments?limit=50`` (list), ``GET /v1/experiments/{id}`` (get),
``GET /v1/experiments/{id}/metrics`` (metrics) and ``GET /healthz``, against a server started
as a subprocess on a fresh database seeded with ``--experiments`` runs of 16 metrics x 50 epochs.
Meanwhile a writer, as a worker would, records a pack's epoch (16 runs x 16 metrics) every
0.2 s through ``worker.reporter.write_epochs``, so SQLite sees its writer lock taken.

Prints per route the count, the 5xx count and p50/p99, and exits non-zero unless there is no
5xx and every route's p99 is at most ``--ratio`` (3) times /healthz's. PostgreSQL is the server
at ``REGLAB_BENCH_POSTGRES_URL`` (skipped, and said so, when it is not reachable).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ingest import KEYS, postgres_database  # noqa: E402
from service.db import jobs  # noqa: E402
from service.db.migrate import upgrade_to_head  # noqa: E402
from service.db.models import Experiment, new_id, utcnow  # noqa: E402
from service.db.session import make_engine, make_sessionmaker  # noqa: E402
from worker.reporter import write_epochs  # noqa: E402

WORKER = "load-writer"
ROUTES = ("list", "get", "metrics", "healthz")


def seed(url: str, n: int, epochs: int = 50) -> list[str]:
    """``n`` experiments (the last 16 running, owned by the writer) with their metrics."""
    upgrade_to_head(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    spec = {"name": "load", "data": {"name": "mnist1d"}, "model": {"name": "mlp"}}
    ids = [new_id() for _ in range(n)]
    with sessions.begin() as s:
        for i, eid in enumerate(ids):
            running = i >= n - 16
            s.add(
                Experiment(
                    id=eid,
                    name=f"load-{i}",
                    status="running" if running else "succeeded",
                    queue="cpu",
                    spec=spec,
                    spec_hash="0" * 64,
                    total_epochs=10_000,
                    attempts=1,
                    lease_owner=WORKER if running else None,
                    lease_expires_at=utcnow() + timedelta(hours=1) if running else None,
                    created_at=utcnow() - timedelta(seconds=n - i),
                    summary=None if running else {"metrics": {"val_loss": 0.5}},
                )
            )
    points = [
        jobs.EpochPoints(eid, step, {k: 1.0 / (step + j) for j, k in enumerate(KEYS)})
        for eid in ids
        for step in range(1, epochs + 1)
    ]
    for start in range(0, len(points), 2000):
        write_epochs(sessions, WORKER, points[start : start + 2000], 3600)
    engine.dispose()
    return ids


class Writer(threading.Thread):
    """A pack's epoch every ``every_s`` seconds, as a worker records them."""

    def __init__(self, url: str, ids: list[str], every_s: float = 0.2):
        super().__init__(daemon=True)
        self.url, self.ids, self.every_s = url, ids, every_s
        self.done = threading.Event()
        self.epochs = 0

    def run(self) -> None:
        engine = make_engine(self.url)
        sessions = make_sessionmaker(engine)
        step = 1000
        while not self.done.wait(self.every_s):
            step += 1
            points = [jobs.EpochPoints(e, step, dict.fromkeys(KEYS, 0.5)) for e in self.ids]
            write_epochs(sessions, WORKER, points, 3600)
            self.epochs += 1
        engine.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(url: str, tmp: Path, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "REGLAB_DATABASE_URL": url,
        "REGLAB_BROKER_DIR": str(tmp / "broker"),
        "REGLAB_ARTIFACTS": str(tmp / "artifacts"),
        "REGLAB_AUTH": "off",
    }
    env.pop("REGLAB_BROKER_URL", None)
    cmd = [sys.executable, "-m", "reglab.cli", "serve", "--port", str(port), "--no-worker"]
    cmd += ["--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"reglab serve exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("reglab serve did not answer /healthz within 60 s")


async def load(base: str, ids: list[str], clients: int, seconds: float):
    latency: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    paths: dict[str, Callable[[], str]] = {
        "list": lambda: "/v1/experiments?limit=50",
        "get": lambda: f"/v1/experiments/{random.choice(ids)}",
        "metrics": lambda: f"/v1/experiments/{random.choice(ids)}/metrics?keys=val_loss,lr",
        "healthz": lambda: "/healthz",
    }
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:

        async def client(i: int) -> None:
            rng = random.Random(i)
            while time.monotonic() < stop_at:
                route = rng.choice(ROUTES)
                start = time.perf_counter()
                try:
                    status = (await http.get(paths[route]())).status_code
                except httpx.HTTPError:
                    status = 599  # no answer counts as a server failure
                latency[route].append(time.perf_counter() - start)
                if status >= 500:
                    errors[route] += 1

        await asyncio.gather(*(client(i) for i in range(clients)))
    return latency, errors


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else 0


def run_backend(name: str, url: str, args) -> bool:
    ids = seed(url, args.experiments)
    writer = Writer(url, ids[-16:])
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server = start_server(url, Path(tmp), port)
        try:
            writer.start()
            latency, errors = asyncio.run(
                load(f"http://127.0.0.1:{port}", ids, args.clients, args.seconds)
            )
        finally:
            writer.done.set()
            writer.join()
            server.terminate()
            server.wait(30)
    health_p99 = pct(latency["healthz"], 99)
    ok = True
    total = sum(len(v) for v in latency.values())
    print(
        f"  {name}: {total} requests in {args.seconds:.0f} s ({total / args.seconds:.0f}/s), "
        f"writer {writer.epochs} pack epochs"
    )
    for route in ROUTES:
        p50, p99 = pct(latency[route], 50), pct(latency[route], 99)
        ratio = p99 / health_p99 if health_p99 else float("inf")
        good = errors[route] == 0 and (route == "healthz" or ratio <= args.ratio)
        ok &= good
        print(
            f"    {route:<8} n={len(latency[route]):>5} 5xx={errors[route]:>3} "
            f"p50={p50 * 1000:7.1f} ms p99={p99 * 1000:7.1f} ms"
            + ("" if route == "healthz" else f" ({ratio:.1f}x /healthz)")
            + ("" if good else "  FAIL")
        )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--experiments", type=int, default=200)
    parser.add_argument("--ratio", type=float, default=3.0)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    print(
        f"load: {args.clients} clients, {args.seconds:.0f} s per backend (target: 0 5xx, "
        f"p99 <= {args.ratio:g}x /healthz)"
    )
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        if args.backend in ("sqlite", "both"):
            ok &= run_backend("sqlite", f"sqlite:///{tmp}/load.db", args)
        if args.backend in ("postgresql", "both"):
            pg = postgres_database()
            if pg is not None:
                url, drop = pg
                try:
                    ok &= run_backend("postgresql", url, args)
                finally:
                    drop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
