"""The Celery app ``reglab`` the workers run (``celery -A worker.celery_app worker``).

Settings for long jobs: a message is acknowledged only after its task returns (acks_late), each
worker reserves one message at a time (prefetch 1), and a message whose worker died is given back
(reject_on_worker_lost). The broker is not trusted for exclusivity: a redelivered message can only
run its experiment if the database lease allows it, so the visibility timeout may be long (a
short one would redeliver a still-running job; the lease makes that harmless, but pointless).
Rows a broker forgot are put back by the reconciler.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_ready

from service.queue import TASK_NAME, celery_config
from service.settings import Settings, get_settings

#: Redis redelivers an unacknowledged message after this long; the DB lease guards correctness.
VISIBILITY_TIMEOUT_S = 12 * 3600


def make_celery(settings: Settings) -> Celery:
    app = Celery("reglab", include=["worker.tasks"])
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
        task_routes={TASK_NAME: {"queue": "cpu"}},  # the API names gpu explicitly when it needs it
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
