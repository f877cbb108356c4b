"""Scenario 6: the API dies between committing an experiment and enqueueing it, or between
enqueueing it and stamping ``enqueued_at``. The reconciler finds the first kind (never enqueued)
and sends it; the second gets a second message. Either way the experiment runs, exactly once.

The crash is reproduced with the API's own steps: ``repo.create`` + commit as ``submit`` does,
then stopping where a crash would."""

from __future__ import annotations

import pytest

from regcore.spec import parse_spec
from service.db import experiments as repo
from service.queue import enqueue, make_celery
from service.settings import Settings
from tests.faults.conftest import PrivateRedis, tiny_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def _commit_like_the_api(stack, name: str, seed: int) -> str:
    spec = parse_spec(tiny_spec(seed=seed, epochs=4, name=name))
    with stack.sessions.begin() as session:
        row = repo.create(
            session,
            name=spec.name,
            spec=spec.model_dump(mode="json"),
            spec_hash=spec.spec_hash(),
            queue="cpu",
            total_epochs=spec.train.epochs,
            max_attempts=3,
            owner="",
        )
        return row.id


def _enqueued_lines(stack) -> str:
    return "".join(
        line for line in stack.serve.output().splitlines() if "reconciler: requeued" in line
    )


def test_a_crash_between_commit_and_enqueue_still_runs_the_experiment_exactly_once(
    stack_factory, new_postgres_database, private_redis: PrivateRedis, figures: dict
):
    stack = stack_factory(new_postgres_database(), private_redis.url)
    api = stack.start_api()
    never_enqueued = _commit_like_the_api(stack, "crash-before-enqueue", 1)
    celery = make_celery(Settings(broker_url=private_redis.url))
    not_stamped = _commit_like_the_api(stack, "crash-before-stamp", 2)
    assert enqueue(celery, not_stamped, "cpu")  # sent; the crash comes before mark_enqueued
    ids = [never_enqueued, not_stamped]
    assert stack.serve is not None
    stack.wait_until(
        lambda: all(f"{i}'" in line for line in [_enqueued_lines(stack)] for i in ids),
        30,
        "the reconciler to send both",
    )
    # two workers, so that the second message of ``not_stamped`` is taken while it runs
    workers = [stack.start_worker(), stack.start_worker()]

    rows = stack.wait_terminal(ids, timeout=90)

    def refused() -> int:
        return sum(w.output().count("not claimed") for w in workers)

    # the duplicate message may arrive after the run it duplicates has ended: wait for it
    stack.wait_until(lambda: refused() >= 1, 60, "the duplicate message to be refused")
    audit = stack.audit()
    skipped = refused()
    figures.update(
        experiments=2,
        crashes_simulated=2,
        succeeded=sum(rows[i]["status"] == "succeeded" for i in ids),
        runs=sum(len(audit.claims(i)) for i in ids),
        duplicate_messages_refused=skipped,
        lost=sum(rows[i]["status"] != "succeeded" for i in ids),
        duplicated_metric_points=stack.duplicated_metric_points(),
    )

    for eid in ids:
        assert rows[eid]["status"] == "succeeded", rows[eid]
        assert rows[eid]["attempts"] == 1
        assert len(audit.claims(eid)) == 1  # one worker ran it, once
        assert api.get(eid)["summary"]["epochs_run"] == 4
    assert skipped >= 1  # the second message of not_stamped was delivered, and refused
    assert figures["duplicated_metric_points"] == 0
    assert audit.violations() == []
