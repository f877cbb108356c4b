"""kombu's filesystem transport, with files that appear whole.

kombu creates a message file under its final ``*.msg`` name and only then writes the payload, and
creates an exchange's binding table with ``open("wb")`` (empty) before locking and filling it. A
consumer polling every few milliseconds (``service.queue.FILESYSTEM_POLL_S``) can take the empty
file: the payload or the table reads as ``""`` and the worker stops with ``Unrecoverable error:
JSONDecodeError``. Here both are written under a name nobody reads and renamed into place, which
is atomic within one folder, so a reader sees nothing or the whole file.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from time import monotonic
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.json import dumps

#: the broker URL that selects this transport: the scheme is registered with kombu on import, so
#: the URL alone says which transport (a ``broker_transport`` setting would outlive a new URL)
SCHEME = "reglab-filesystem"
URL = f"{SCHEME}://"
TRANSPORT_ALIASES.setdefault(SCHEME, "service.filesystem_broker:Transport")


def write_whole(path: Path, data: bytes, *, exclusive: bool = False) -> bool:
    """Write ``data`` to ``path`` so that no reader ever sees a part of it.

    The bytes go to a hidden name in the same folder first, then take ``path`` by a rename, or
    with ``exclusive`` by a hard link, which fails when ``path`` exists (False: nothing written).
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if not exclusive:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        Path(tmp).unlink(missing_ok=True)


class Channel(filesystem.Channel):
    # kombu names the payload "payload" here and "message" in its base class: keep this one
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        try:
            write_whole(Path(self.data_folder_out) / name, dumps(payload).encode())
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot add file {name!r} to directory") from exc

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        file = self._exchange_file(exchange)
        self.control_folder.mkdir(exist_ok=True)
        row = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        try:
            if write_whole(file, dumps([row]).encode(), exclusive=True):
                return
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot open {file}") from exc
        # The table exists: kombu's own path adds the row under an exclusive lock, rewriting a
        # table that only grows from its start, so a reader (shared lock) never sees it cut.
        super()._queue_bind(exchange, routing_key, pattern, queue)


class Transport(filesystem.Transport):
    Channel = Channel
