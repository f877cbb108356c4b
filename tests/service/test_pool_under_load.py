"""Concurrent clients cannot exhaust the database pool (service.db.session): more requests in
flight than AnyIO's worker threads all answer, on SQLite and on PostgreSQL, and /healthz needs
no thread at all."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from service.db.session import API_THREADS, make_engine


def test_sqlite_hands_out_more_connections_than_there_are_threads_without_waiting(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'pool.db'}", pool_timeout=2)
    try:
        start = time.monotonic()
        held = [engine.connect() for _ in range(API_THREADS + 20)]
        assert time.monotonic() - start < 2  # not one checkout waited for another's return
        for conn in held:
            conn.close()
    finally:
        engine.dispose()


def test_more_concurrent_requests_than_threads_all_answer(client, sessions):
    for i in range(3):
        assert client.post("/v1/experiments", json={
            "name": f"e{i}", "data": {"name": "toy1d"}, "model": {"name": "mlp"},
        }).status_code == 202  # fmt: skip
    eid = client.get("/v1/experiments").json()["items"][0]["id"]
    paths = ["/v1/experiments?limit=50", f"/v1/experiments/{eid}", f"/v1/experiments/{eid}/metrics"]
    n = API_THREADS + 30
    barrier = threading.Barrier(n)

    def call(i: int) -> int:
        barrier.wait()
        return client.get(paths[i % len(paths)]).status_code

    start = time.monotonic()
    with ThreadPoolExecutor(n) as pool:
        codes = list(pool.map(call, range(n)))
    assert codes == [200] * n
    assert time.monotonic() - start < 20  # a starved pool waits 10-30 s per request


def test_healthz_answers_while_every_worker_thread_is_busy(client):
    """All of AnyIO's threads blocked: /healthz still answers at once (it runs on the loop)."""
    import anyio.to_thread

    release = threading.Event()
    started = threading.Semaphore(0)

    def block() -> None:
        started.release()
        release.wait(30)

    async def fill() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(API_THREADS):
                tg.start_soon(anyio.to_thread.run_sync, block)

    runner = threading.Thread(target=lambda: client.portal.call(fill), daemon=True)
    runner.start()
    try:
        for _ in range(API_THREADS):
            assert started.acquire(timeout=10)
        start = time.monotonic()
        assert client.get("/healthz").status_code == 200
        # at once: 0.03 s here; one that needed a thread would wait for the blocked ones (30 s).
        # The margin is wide because a loaded CI box once paused this process for 2.1 s
        assert time.monotonic() - start < 5
    finally:
        release.set()
        runner.join(30)
