"""The Celery *client*: the API enqueues experiments by task name and never imports task code.

With no ``broker_url`` the broker is kombu's filesystem transport under ``broker_dir`` (no server
needed). ``celery_config`` is shared with the worker so both ends agree on the folders.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from celery import Celery

from service import filesystem_broker
from service.settings import Settings

log = logging.getLogger(__name__)

TASK_NAME = "experiments.run"
#: one message for a pack of sweep trials (``worker.packs``): ``args=[[experiment ids]]``
PACK_TASK_NAME = "experiments.run_pack"
#: how often a worker on the filesystem broker looks for a new message
FILESYSTEM_POLL_S = 0.02


def broker_folders(settings: Settings) -> dict[str, Path]:
    root = Path(settings.broker_dir).resolve()
    # Producer and consumer read and write the same folder, so "in" and "out" are one.
    return {"queue": root / "queue", "processed": root / "processed", "control": root / "control"}


def celery_config(settings: Settings) -> dict[str, Any]:
    """Broker settings both the API (producer) and the worker (consumer) use."""
    if settings.broker_url:
        options: dict[str, Any] = {"socket_connect_timeout": 3, "socket_timeout": 10}
        return {"broker_url": settings.broker_url, "broker_transport_options": options}
    folders = broker_folders(settings)
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    return {
        # kombu's filesystem transport with message and binding files written whole (a
        # consumer polling every 20 ms could read one kombu had created but not yet filled)
        "broker_url": filesystem_broker.URL,
        "broker_transport_options": {
            "data_folder_in": str(folders["queue"]),
            "data_folder_out": str(folders["queue"]),
            "processed_folder": str(folders["processed"]),
            "control_folder": str(folders["control"]),
            "store_processed": False,
            # The transport finds a message by listing the folder, by default once a second:
            # submit -> running took ~1 s. A listing every 20 ms costs next to nothing.
            "polling_interval": FILESYSTEM_POLL_S,
        },
    }


def make_celery(settings: Settings) -> Celery:
    """A Celery app that only sends; creating it does not connect."""
    app = Celery("reglab", set_as_current=False)
    app.conf.update(
        celery_config(settings),
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
        broker_connection_retry_on_startup=False,
    )
    return app


def enqueue(app: Celery, experiment_id: str | list[str], queue: str) -> bool:
    """Send ``experiments.run`` (one id, or a list of one) or ``experiments.run_pack`` (a list
    of several); False (logged) when the broker refused: the rows stay queued and the reconciler
    sends them again, one by one."""
    ids = [experiment_id] if isinstance(experiment_id, str) else experiment_id
    task, args = (TASK_NAME, [ids[0]]) if len(ids) == 1 else (PACK_TASK_NAME, [ids])
    try:
        app.send_task(task, args=args, queue=queue)
    except Exception:  # noqa: BLE001 - the row stays queued and is re-enqueued later
        log.warning("could not enqueue experiment(s) %s on queue %s", ids, queue, exc_info=True)
        return False
    return True


def broker_ready(app: Celery, timeout: float = 3.0) -> str | None:
    """None when the broker answers, else the reason."""
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - reported by /readyz
        return f"{type(exc).__name__}: {exc}"
    return None
