"""``reglab serve``, ``reglab worker`` and ``reglab reconcile``.

``serve`` is the API under uvicorn plus the reconciler thread and, when no broker is configured
(the embedded default), a worker subprocess on the filesystem broker. ``worker`` is one Celery
worker with the solo pool: one experiment at a time, in the worker's own process, which is what
a GPU wants (one worker per GPU, chosen with CUDA_VISIBLE_DEVICES).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Annotated

import typer

from reglab.output import stderr

log = logging.getLogger("reglab")


def _migrate(url: str) -> None:
    from service.db.migrate import MigrationError, upgrade_to_head

    try:
        upgrade_to_head(url)
    except MigrationError as err:
        stderr().print(f"[red]error:[/red] {err}", highlight=False)
        stderr().print("Fix the database URL (REGLAB_DATABASE_URL) or run `alembic upgrade head`.")
        raise typer.Exit(2) from None


def _logging(level: str) -> None:
    # JSON lines with the request id (REGLAB_LOG_FORMAT=text for plain lines); importing it also
    # connects the Celery signals that carry the request id into the worker's runs
    from service.observability.logs import configure_logging

    fmt = "text" if os.environ.get("REGLAB_LOG_FORMAT", "json").lower() == "text" else "json"
    configure_logging(getattr(logging, level.upper(), logging.INFO), fmt)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def serve(
    host: Annotated[str, typer.Option(help="address to bind (0.0.0.0 exposes it)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind")] = 8000,
    worker: Annotated[
        bool | None,
        typer.Option(
            "--worker/--no-worker",
            help="run an embedded worker (default: only when no broker is configured)",
        ),
    ] = None,
    migrate: Annotated[
        bool,
        typer.Option(
            "--migrate/--no-migrate",
            help="upgrade the database to the current schema first (off when a separate "
            "migration step owns upgrades, as compose's `migrate` service does)",
        ),
    ] = True,
    log_level: Annotated[str, typer.Option(help="log level")] = "info",
) -> None:
    """The REST API, the reconciler and (on the embedded default) a worker."""
    import uvicorn
    from celery import Celery

    from service.db.session import make_engine, make_sessionmaker
    from service.main import create_app
    from service.queue import make_celery
    from service.settings import get_settings
    from worker.reconciler import Reconciler, part_file_sweeper

    _logging(log_level)
    # REGLAB_AUTH=auto turns API keys on when --host is anything but loopback.
    settings = get_settings().model_copy(update={"bind_host": host})
    if migrate:
        _migrate(settings.database_url)
    embedded = settings.broker_url is None if worker is None else worker
    child = _start_embedded_worker(log_level) if embedded else None

    engine = make_engine(settings.database_url)
    celery: Celery = make_celery(settings)
    reconciler = Reconciler(
        make_sessionmaker(engine),
        celery,
        settings.reconcile_seconds,
        stale_after_s=settings.stale_queued_seconds,
        parts=part_file_sweeper(settings.artifacts, settings.partial_file_seconds),
        pack_size=settings.pack_size,
    )
    reconciler.start()
    where = settings.broker_url and "a broker" or f"the filesystem broker in {settings.broker_dir}"
    stderr().print(
        f"reglab serve: http://{host}:{port} · database {_safe(settings.database_url)} · "
        f"{where} · {'embedded worker' if child else 'no embedded worker'}",
        highlight=False,
    )
    try:
        uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level.lower())
    finally:
        reconciler.stop()
        if child is not None:
            _stop(child)
        engine.dispose()


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _start_embedded_worker(log_level: str) -> subprocess.Popen:
    # A subprocess, not a thread: torch and Celery's signal handling want their own process, and
    # a crash in training cannot take the API down.
    cmd = [
        sys.executable, "-m", "reglab.cli", "worker", "--no-migrate", "--queues", "cpu,gpu",
        "--parent-pid", str(os.getpid()), "--log-level", log_level,
    ]  # fmt: skip
    return subprocess.Popen(cmd)


def _stop(child: subprocess.Popen, grace_s: float = 30.0) -> None:
    """SIGTERM: the worker stops its run at the next step and puts it back in the queue."""
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(grace_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def worker(
    queues: Annotated[
        str | None,
        typer.Option(
            help="queues to consume, comma-separated (default: gpu,cpu with a GPU, else cpu)"
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            help="torch CPU threads per run (default: 1 for small models, else all cores)"
        ),
    ] = None,
    migrate: Annotated[
        bool, typer.Option(help="upgrade the database to the current schema first")
    ] = True,
    name: Annotated[str | None, typer.Option(help="Celery node name")] = None,
    log_level: Annotated[str, typer.Option(help="log level")] = "info",
    parent_pid: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """A Celery worker: runs one experiment at a time (the solo pool), one worker per GPU."""
    from service.settings import get_settings

    _logging(log_level)
    settings = get_settings()
    if migrate:
        _migrate(settings.database_url)
    if queues is None:
        import torch

        queues = "gpu,cpu" if torch.cuda.is_available() else "cpu"
    if threads is not None:  # read by the worker context, in this process (solo pool)
        os.environ["REGLAB_WORKER_THREADS"] = str(threads)
        get_settings.cache_clear()
    if parent_pid is not None:
        _exit_with_parent(parent_pid)

    from worker.celery_app import app

    node = name or f"reglab-{os.getpid()}@{socket.gethostname()}"
    stderr().print(
        f"reglab worker {node}: queues {queues} · database {_safe(settings.database_url)}",
        highlight=False,
    )
    app.worker_main(
        [
            "worker", "--pool", "solo", "--concurrency", "1", "--queues", queues,
            "--hostname", node, "--loglevel", log_level.upper(),
            "--without-mingle", "--without-gossip",
        ]
    )  # fmt: skip


def _exit_with_parent(parent_pid: int) -> None:
    """The embedded worker stops (gracefully) when ``reglab serve`` is gone, even if it was
    killed without a chance to stop its child."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def reconcile(
    stale_after: Annotated[
        float | None,
        typer.Option(
            help="re-send queued rows enqueued longer ago than this (seconds; default "
            "REGLAB_STALE_QUEUED_SECONDS)"
        ),
    ] = None,
) -> None:
    """Once: requeue runs whose worker died, re-send queued runs the broker may have lost."""
    from service.db.session import make_engine, make_sessionmaker
    from service.queue import make_celery
    from service.settings import get_settings
    from worker.reconciler import part_file_sweeper, reconcile_once

    settings = get_settings()
    engine = make_engine(settings.database_url)
    try:
        report = reconcile_once(
            make_sessionmaker(engine),
            make_celery(settings),
            stale_after_s=settings.stale_queued_seconds if stale_after is None else stale_after,
            parts=part_file_sweeper(settings.artifacts, settings.partial_file_seconds),
            pack_size=settings.pack_size,
        )
    finally:
        engine.dispose()
    stderr().print(
        f"requeued {len(report.requeued)} run(s) whose worker died; "
        f"enqueued {len(report.enqueued)} queued run(s); "
        f"removed {len(report.removed_parts)} leftover upload file(s)",
        highlight=False,
    )
