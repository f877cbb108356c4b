"""Scenario: the broker loses every message published for a while (issue 16: "a minute"; here
``WINDOW_S``, with ``REGLAB_STALE_QUEUED_SECONDS`` scaled down from its 600 s default to
``STALE_S``, shorter than the window, so that the reconciler's re-sends inside it are lost too).

The loss: while the window is open a thread of the test takes every message off the private
Redis's queue lists as soon as it lands (``LRANGE`` + ``DEL`` in one transaction) and notes the
experiment it was for. Nobody else can take one first: the only worker is busy with a long run
(solo pool, one message prefetched, acknowledged late), as a loaded fleet is. The API's sends
succeed; the messages vanish, as with a Redis that fails over to a replica that missed them.
Once the window closes the long run is cancelled; the reconciler must re-send every queued run
whose message was lost (``jobs.stale_queued``), and each must run exactly once."""

from __future__ import annotations

import ast
import json
import re
import threading
import time

import pytest
import redis

from tests.faults.conftest import PrivateRedis, tiny_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

WINDOW_S = 12.0
STALE_S = 4
SUBMITTED = 6
ID = re.compile(r"[0-9a-f]{32}")


class BlackHole(threading.Thread):
    """Drops every message that lands on a queue list of ``url`` until ``close()``; ``dropped``
    lists the experiment ids of the messages it dropped, one entry per message."""

    def __init__(self, url: str, queues: tuple[str, ...] = ("cpu", "gpu")):
        super().__init__(name="black-hole", daemon=True)
        self.client = redis.Redis.from_url(url)
        self.queues = queues
        self.dropped: list[str] = []
        self._closed = threading.Event()

    def _keys(self) -> list[bytes | str]:
        # kombu's queue list, and its per-priority lists (``<queue>\x06\x16<priority>``)
        return [k for q in self.queues for k in self.client.keys(f"{q}*")
                if self.client.type(k) == b"list"]  # fmt: skip

    def drain(self) -> None:
        for key in self._keys():
            pipe = self.client.pipeline(transaction=True)
            pipe.lrange(key, 0, -1)
            pipe.delete(key)
            messages, _ = pipe.execute()
            for raw in messages:
                args = json.loads(raw)["headers"].get("argsrepr") or "[]"
                self.dropped += ID.findall(str(ast.literal_eval(args)))

    def run(self) -> None:
        while not self._closed.wait(0.005):
            self.drain()

    def close(self) -> None:
        self._closed.set()
        self.join(5)
        self.drain()  # what landed between the last pass and the close
        self.client.close()


def _resent(serve_log: str) -> list[str]:
    return [eid for found in re.findall(r"enqueued (\[.*?\])", serve_log)
            for eid in ast.literal_eval(found)]  # fmt: skip


def test_runs_whose_messages_the_broker_lost_are_resent_and_run_exactly_once(
    stack_factory, new_postgres_database, private_redis: PrivateRedis, figures: dict
):
    stack = stack_factory(
        new_postgres_database(), private_redis.url, stale_queued_seconds=str(STALE_S)
    )
    api = stack.start_api()
    worker = stack.start_worker()
    busy = api.submit(tiny_spec(epochs=1000, batch_size=10, name="keeps-the-worker-busy"))["id"]
    stack.wait_until(lambda: (stack.experiments()[busy]["last_epoch"] or 0) >= 1, 90, "busy")

    hole = BlackHole(private_redis.url)
    hole.start()
    opened = time.monotonic()
    ids = []
    for i in range(SUBMITTED):
        ids.append(api.submit(tiny_spec(seed=i, epochs=2, name=f"lost-{i}"))["id"])
        time.sleep(WINDOW_S / (SUBMITTED + 1))
    time.sleep(max(0.0, WINDOW_S - (time.monotonic() - opened)))
    hole.close()
    window = time.monotonic() - opened
    busy_through_window = stack.experiments()[busy]["status"] == "running"
    resent_in_window = _resent(stack.serve.output() if stack.serve else "")
    api.cancel(busy)
    closed = time.monotonic()

    rows = stack.wait_terminal([*ids, busy], timeout=120)
    recovered_s = time.monotonic() - closed
    audit = stack.audit()
    resent = _resent(stack.serve.output() if stack.serve else "")
    figures.update(
        experiments=SUBMITTED + 1,
        window_s=round(window, 1),
        stale_queued_s=STALE_S,
        messages_dropped=len(hole.dropped),
        resends_dropped=len(hole.dropped) - len(set(hole.dropped)),
        runs_whose_message_was_lost=len(set(hole.dropped) & set(ids)),
        resent_by_reconciler=len(resent),
        resent_in_window=len(resent_in_window),
        duplicate_messages_refused=worker.output().count(" not claimed ("),
        seconds_to_all_finished_after_window=round(recovered_s, 1),
        succeeded=sum(rows[i]["status"] == "succeeded" for i in ids),
        runs=sum(len(audit.claims(i)) for i in ids),
        lost=sum(rows[i]["status"] != "succeeded" for i in ids),
        duplicated_metric_points=stack.duplicated_metric_points(),
        lease_violations=len(audit.violations()),
    )

    assert busy_through_window, "the busy run ended inside the window: a message may have gone"
    assert rows[busy]["status"] == "cancelled"
    # the fault happened: every run submitted in the window had its message dropped, and the
    # reconciler's re-sends inside the window were dropped too; every one was re-sent after
    assert set(hole.dropped) == set(ids), (hole.dropped, ids)
    assert len(hole.dropped) > len(ids) and set(resent_in_window) <= set(ids)
    assert set(resent) >= set(ids)
    for eid in ids:
        assert rows[eid]["status"] == "succeeded", rows[eid]
        assert rows[eid]["attempts"] == 1 and len(audit.claims(eid)) == 1  # once, not twice
    assert figures["duplicated_metric_points"] == 0
    assert audit.violations() == []
