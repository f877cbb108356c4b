"""The Celery app ``reglab`` the workers run (``celery -A worker.celery_app worker``).

Settings for long jobs: a message is acknowledged only after its task returns (acks_late), each
worker reserves one message at a time (prefetch 1), and a message whose worker died is given back
(reject_on_worker_lost). The broker is not trusted for exclusivity: a redelivered message can only
run its experiment if the database lease allows it, so the visibility timeout may be long (a
short one would redeliver a still-running job; the lease makes that harmless, but pointless).
Rows a broker forgot are put back by the reconciler.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery
from celery.signals import task_postrun, worker_process_init, worker_ready, worker_shutdown
from sqlalchemy.orm import Session, sessionmaker

from service.db import workers
from service.queue import PACK_TASK_NAME, TASK_NAME, celery_config
from service.settings import Settings, get_settings

log = logging.getLogger(__name__)

#: Redis redelivers an unacknowledged message after this long; the DB lease guards correctness.
VISIBILITY_TIMEOUT_S = 12 * 3600


def make_celery(settings: Settings) -> Celery:
    app = Celery("reglab", include=["worker.tasks", "worker.packs"])
    config: dict[str, Any] = celery_config(settings)
    if settings.broker_url:
        config["broker_transport_options"] = {
            **config["broker_transport_options"],
            "visibility_timeout": VISIBILITY_TIMEOUT_S,
        }
    app.conf.update(
        config,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="cpu",
        # the API names gpu explicitly when it needs it
        task_routes={TASK_NAME: {"queue": "cpu"}, PACK_TASK_NAME: {"queue": "cpu"}},
        task_ignore_result=True,  # results live in the database
        task_track_started=False,
        broker_connection_retry_on_startup=True,
        worker_send_task_events=False,
        # Long jobs keep running through a broker blip; the lease, not the broker, decides.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
        enable_utc=True,
    )
    if not settings.broker_url:
        # The filesystem transport has no remote control worth having and polls a folder.
        app.conf.update(worker_enable_remote_control=False, broker_pool_limit=None)
    return app


app = make_celery(get_settings())


@worker_process_init.connect
def _fresh_process_state(**_: Any) -> None:
    # A forked pool child must not share its parent's database connections.
    from worker.context import reset_context

    reset_context()


@worker_ready.connect
def _liveness_file(**_: Any) -> None:
    # The healthcheck reads the file's age: a solo-pool worker busy with a run cannot answer
    # `celery inspect ping`, so the idle timer (and each run's lease renewals) touch it instead.
    from worker.lease import start_idle_heartbeat

    start_idle_heartbeat(get_settings().worker_heartbeat_file)


@worker_ready.connect
def _serve_metrics(**_: Any) -> None:
    # lease renewals happen in this process: it serves them (service.observability.counters)
    settings = get_settings()
    if settings.worker_metrics_port is not None:
        from service.observability.counters import serve_worker_metrics

        server = serve_worker_metrics(settings.worker_metrics_port, settings.worker_metrics_addr)
        log.info("worker metrics at http://%s:%d/metrics", *server.server_address[:2])


class QueueHeartbeat(threading.Thread):
    """Renews this worker's ``worker_heartbeats`` row (the queues it consumes) every
    ``workers.HEARTBEAT_S`` until ``stop()``, which deletes it: the reconciler counts a queue's
    consumers from these rows."""

    def __init__(self, sessions: sessionmaker[Session], worker: str, queues: list[str]):
        super().__init__(name="reglab-queue-heartbeat", daemon=True)
        self.sessions, self.worker, self.queues = sessions, worker, queues
        self._stop_event = threading.Event()

    def run(self) -> None:
        while True:
            try:
                with self.sessions.begin() as session:
                    workers.beat(session, self.worker, self.queues)
            except Exception:  # noqa: BLE001 - a database blip: the next beat retries
                log.warning("could not renew the worker heartbeat", exc_info=True)
            if self._stop_event.wait(workers.HEARTBEAT_S):
                break
        try:
            with self.sessions.begin() as session:
                workers.forget(session, self.worker)
        except Exception:  # noqa: BLE001 - the row ages out after workers.ALIVE_S
            log.warning("could not delete the worker heartbeat", exc_info=True)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


_queue_heartbeat: QueueHeartbeat | None = None


@worker_ready.connect
def _announce_queues(sender: Any = None, **_: Any) -> None:
    global _queue_heartbeat
    from worker.context import get_context

    ctx = get_context()
    queues = sorted(app.amqp.queues.consume_from or ["cpu"])
    node = getattr(sender, "hostname", None) or ctx.worker_id
    _queue_heartbeat = QueueHeartbeat(ctx.sessions, f"{node}:{ctx.worker_id}", queues)
    _queue_heartbeat.start()


@worker_shutdown.connect
def _withdraw_queues(**_: Any) -> None:
    if _queue_heartbeat is not None:
        _queue_heartbeat.stop()


@task_postrun.connect
def _next_sweep_trials(sender: Any = None, args: Any = None, **_: Any) -> None:
    """A sweep's next trials start when one of its runs (or packs) ends, not at the
    reconciler's pass."""
    if getattr(sender, "name", None) not in (TASK_NAME, PACK_TASK_NAME) or not args:
        return
    from worker.context import get_context
    from worker.reconciler import advance_sweep

    eid = args[0] if isinstance(args[0], str) else args[0][0]  # a pack's trials share a sweep
    ctx = get_context()
    try:
        advance_sweep(ctx.sessions, app, eid, ctx.settings.pack_size)
    except Exception:  # noqa: BLE001 - the reconciler's next pass launches them
        log.warning("could not launch the next trials after %s", eid, exc_info=True)
