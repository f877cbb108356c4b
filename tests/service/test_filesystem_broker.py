"""The embedded broker's files appear whole: a reader never takes an empty message or table."""

from __future__ import annotations

import json
import threading

from celery import Celery

from service.filesystem_broker import Transport, write_whole
from service.queue import celery_config, make_celery
from service.settings import Settings


def test_write_whole_leaves_no_partial_name_and_exclusive_refuses_an_existing_file(tmp_path):
    target = tmp_path / "a.msg"
    assert write_whole(target, b"one")
    assert write_whole(target, b"two")
    assert target.read_bytes() == b"two"
    assert not write_whole(target, b"three", exclusive=True)
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.msg"]


def test_the_embedded_default_uses_the_whole_file_transport(tmp_path):
    app = make_celery(Settings(broker_dir=str(tmp_path / "broker")))
    with app.connection_for_write() as conn:
        assert isinstance(conn.transport, Transport)


def test_a_reader_polling_while_messages_are_sent_never_sees_an_empty_file(tmp_path):
    """kombu's own _put creates ``*.msg`` before writing it; a fast poller read it empty."""
    settings = Settings(broker_dir=str(tmp_path / "broker"))
    queue_dir = tmp_path / "broker" / "queue"
    app = Celery("t", set_as_current=False)
    app.conf.update(celery_config(settings))
    stop = threading.Event()
    seen: list[bytes] = []

    def poll() -> None:
        while not stop.is_set():
            for p in queue_dir.glob("*.msg"):
                try:
                    seen.append(p.read_bytes())
                except FileNotFoundError:
                    pass

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for i in range(200):
            app.send_task("experiments.run", args=[f"id{i}"], queue="cpu")
    finally:
        stop.set()
        reader.join()
    assert seen, "the poller saw no message"
    for data in seen:
        assert json.loads(data)["headers"]["task"] == "experiments.run"
