"""``GET /metrics`` in the Prometheus text format.

Counted in this process (``prometheus_client``):

- ``reglab_http_requests_total{method, route, status}`` and
  ``reglab_http_request_duration_seconds{method, route}`` (a histogram), per route template.

Read from the database at each scrape (a few grouped counts; cheap with the status index):

- ``reglab_experiments{status}``: experiments by status;
- ``reglab_queue_depth{queue}`` and ``reglab_queue_oldest_age_seconds{queue}``: queued
  experiments per queue and how long the oldest has waited since it was created;
- ``reglab_leases{state}``: running experiments whose lease is ``live`` or ``expired`` (an
  expired one is what the reconciler takes back; a live one is being renewed by its worker);
- ``reglab_experiments_retried``: experiments that needed more than one attempt (the
  reconciler's requeues and the worker's retries leave ``attempts > 1``);
- ``reglab_runs_waiting_for_worker{queue}``: queued runs the reconciler marked as waiting for a
  worker on a queue nobody consumes (``service.db.workers.WAITING``).

And the reconciler's actions, counted by its thread in this process
(``service.observability.counters``). Lease renewals are counted in the workers' processes and
served by each worker (``REGLAB_WORKER_METRICS_PORT``), not here.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from service.db.models import STATUSES, Experiment
from service.db.workers import WAITING
from service.observability.counters import RECONCILER

REGISTRY = CollectorRegistry()
REQUESTS = Counter(
    "reglab_http_requests",
    "HTTP requests answered, by method, route template and status",
    ["method", "route", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "reglab_http_request_duration_seconds",
    "time to answer an HTTP request, by method and route template",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)


def observe(method: str, route: str, status: int, seconds: float) -> None:
    REQUESTS.labels(method, route, str(status)).inc()
    LATENCY.labels(method, route).observe(seconds)


def database_families(session: Any, now: datetime | None = None) -> Iterator[GaugeMetricFamily]:
    """The gauges read from the database (see the module doc)."""
    now = now or datetime.now(UTC)
    by_status = dict(
        session.execute(select(Experiment.status, func.count()).group_by(Experiment.status)).all()
    )
    experiments = GaugeMetricFamily(
        "reglab_experiments", "experiments by status", labels=["status"]
    )
    for status in STATUSES:
        experiments.add_metric([status], by_status.get(status, 0))
    yield experiments

    depth = GaugeMetricFamily("reglab_queue_depth", "queued experiments", labels=["queue"])
    age = GaugeMetricFamily(
        "reglab_queue_oldest_age_seconds",
        "seconds since the oldest queued experiment was created",
        labels=["queue"],
    )
    queued = session.execute(
        select(Experiment.queue, func.count(), func.min(Experiment.created_at))
        .where(Experiment.status == "queued")
        .group_by(Experiment.queue)
    ).all()
    seen = set()
    for queue, count, oldest in queued:
        seen.add(queue)
        depth.add_metric([queue], count)
        if oldest is not None:
            oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
            age.add_metric([queue], max(0.0, (now - oldest).total_seconds()))
    for queue in ("cpu", "gpu"):
        if queue not in seen:
            depth.add_metric([queue], 0)
            age.add_metric([queue], 0)
    yield depth
    yield age

    running = Experiment.status == "running"
    expired = session.scalar(select(func.count()).where(running, Experiment.lease_expires_at < now))
    total = by_status.get("running", 0)
    leases = GaugeMetricFamily(
        "reglab_leases", "running experiments by lease state", labels=["state"]
    )
    leases.add_metric(["live"], total - (expired or 0))
    leases.add_metric(["expired"], expired or 0)
    yield leases
    retried = session.scalar(select(func.count()).where(Experiment.attempts > 1))
    yield GaugeMetricFamily(
        "reglab_experiments_retried",
        "experiments that needed more than one attempt",
        value=retried or 0,
    )
    waiting = GaugeMetricFamily(
        "reglab_runs_waiting_for_worker",
        "queued runs on a queue no live worker consumes (the reconciler marked them)",
        labels=["queue"],
    )
    marked = session.execute(
        select(Experiment.queue, func.count())
        .where(
            Experiment.status == "queued",
            Experiment.error.startswith(WAITING, autoescape=True),
        )
        .group_by(Experiment.queue)
    ).all()
    for queue, count in [*marked, *((q, 0) for q in ("cpu", "gpu") if q not in dict(marked))]:
        waiting.add_metric([queue], count)
    yield waiting


class _Database:
    def __init__(self, session: Any):
        self.session = session

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from database_families(self.session)


router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}},
)
def prometheus_metrics(request: Request) -> Response:
    """Prometheus metrics: per-route requests and latency, experiments by status, queue depth
    and oldest queued age per queue, lease states, retried experiments, runs waiting for a
    worker, the reconciler's actions."""
    with request.app.state.sessionmaker() as session:
        registry = CollectorRegistry()
        registry.register(_Database(session))
        body = generate_latest(REGISTRY) + generate_latest(RECONCILER) + generate_latest(registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
