"""Scenario 3: the broker (a Redis without persistence) is killed and restarted in the middle of
a burst of submissions. Messages sent before the kill are gone with it, those sent while it is
down fail; every experiment the API accepted with 202 must still reach a terminal state."""

from __future__ import annotations

import ast
import re

import httpx
import pytest

from tests.faults.conftest import PrivateRedis, tiny_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BURST = 12
KILL_AFTER = 4  # submissions before the kill
DOWN_FOR = 4  # submissions while Redis is down


def test_every_experiment_accepted_during_a_redis_restart_reaches_a_terminal_state(
    stack_factory, new_postgres_database, private_redis: PrivateRedis, figures: dict
):
    # the reconciler re-sends a queued row whose message is 10 s old (600 s by default)
    stack = stack_factory(new_postgres_database(), private_redis.url, stale_queued_seconds="10")
    stack.start_api()
    stack.start_worker()
    accepted, refused, server_errors = [], 0, 0
    for i in range(BURST):
        if i == KILL_AFTER:
            private_redis.kill()
        if i == KILL_AFTER + DOWN_FOR:
            private_redis.start()
            private_redis.restarts += 1
        response = httpx.post(
            f"{stack.base}/v1/experiments", json=tiny_spec(seed=i, epochs=3, name=f"burst-{i}"),
            timeout=30,
        )  # fmt: skip
        if response.status_code == 202:
            accepted.append(response.json()["id"])
        else:
            refused += 1
            server_errors += response.status_code >= 500
    figures.update(
        experiments=BURST,
        accepted=len(accepted),
        refused=refused,
        server_errors_5xx=server_errors,
        redis_restarts=private_redis.restarts,
    )

    rows = stack.wait_terminal(accepted, timeout=150)
    resent = [
        eid
        for line in re.findall(r"enqueued (\[.*?\])", stack.serve.output() if stack.serve else "")
        for eid in ast.literal_eval(line)
    ]
    lost = [eid for eid in accepted if rows[eid]["status"] != "succeeded"]
    figures.update(
        succeeded=sum(rows[eid]["status"] == "succeeded" for eid in accepted),
        lost=len(lost),
        resent_by_reconciler=len(set(resent)),
        duplicated_metric_points=stack.duplicated_metric_points(),
        attempts=sum(rows[eid]["attempts"] for eid in accepted),
    )

    assert refused == 0  # the database is the queue of record: a broker outage refuses nothing
    assert len(accepted) == BURST
    assert not lost, {eid: rows[eid] for eid in lost}
    # the messages lost with Redis (and the sends that failed) came back from the reconciler
    assert set(resent) >= set(accepted[KILL_AFTER : KILL_AFTER + DOWN_FOR])
    assert figures["duplicated_metric_points"] == 0
    assert stack.audit().violations() == []
