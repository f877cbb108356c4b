"""What the reconciler and the workers do, counted where they do it (``prometheus_client``).

- ``reglab_reconciler_actions_total{action}``: ``requeued`` (a running row whose lease expired,
  put back in the queue), ``resent`` (a queued row's message sent again: never sent, or sent
  long ago), ``stopped`` (a sweep trial stopped early), ``part_removed`` (a killed upload's
  ``.part`` file deleted). The reconciler runs as a thread of ``reglab serve``, so these are
  in the API's ``GET /metrics`` (``RECONCILER``); ``reglab reconcile`` (one pass, then exit)
  counts into its own short-lived process and exports nothing.
- ``reglab_lease_renewals_total{outcome}``: the lease keeper's renewals of the run a worker
  holds (``worker.lease``): ``renewed``, ``lost`` (the row is no longer the worker's) or
  ``failed`` (the database did not answer; the next renewal tries again). They are counted in
  each worker's process (``WORKER``), which serves them on its own port when
  ``REGLAB_WORKER_METRICS_PORT`` is set (``serve_worker_metrics``): Prometheus scrapes the API
  and each worker. Not a table: that would cost a write per renewal, and the workers may run on
  other hosts, which rules out prometheus_client's multiprocess mode (a shared folder).

Runs waiting because no worker consumes their queue are state, not events: the API reads them
from the database at each scrape (``reglab_runs_waiting_for_worker`` in
``service.observability.metrics``).
"""

from __future__ import annotations

from collections.abc import Sized
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, start_http_server

RECONCILER = CollectorRegistry()
WORKER = CollectorRegistry()

RECONCILER_ACTIONS = Counter(
    "reglab_reconciler_actions",
    "what the reconciler did: requeued expired leases, re-sent messages, stopped sweep "
    "trials, removed leftover upload files",
    ["action"],
    registry=RECONCILER,
)
LEASE_RENEWALS = Counter(
    "reglab_lease_renewals",
    "lease renewals by this worker's lease keeper, by outcome (renewed, lost, failed)",
    ["outcome"],
    registry=WORKER,
)
for _action in ("requeued", "resent", "stopped", "part_removed"):
    RECONCILER_ACTIONS.labels(_action)  # every series present from the start, at 0
for _outcome in ("renewed", "lost", "failed"):
    LEASE_RENEWALS.labels(_outcome)


def reconciled(requeued: Sized, resent: Sized, stopped: Sized, parts_removed: Sized) -> None:
    """Count one reconciler pass's actions (the lists of its ``Report``)."""
    for action, done in (
        ("requeued", requeued),
        ("resent", resent),
        ("stopped", stopped),
        ("part_removed", parts_removed),
    ):
        if len(done):
            RECONCILER_ACTIONS.labels(action).inc(len(done))


def lease_renewal(outcome: str) -> None:
    LEASE_RENEWALS.labels(outcome).inc()


def serve_worker_metrics(port: int, addr: str = "127.0.0.1") -> WSGIServer:
    """Serve ``WORKER`` in the Prometheus text format at ``http://addr:port/metrics`` from a
    daemon thread (``port`` 0 picks a free one: ``server_port`` says which)."""
    server, _ = start_http_server(port, addr, registry=WORKER)
    return server
