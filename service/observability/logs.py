"""JSON log lines (one object a line: time, level, logger, message, request_id, and the
exception when there is one), for the API and the worker alike.

``configure_logging()`` puts one JSON handler on the root logger (idempotent);
``reglab serve`` and ``reglab worker`` call it, and ``REGLAB_LOG_FORMAT=text`` keeps plain lines.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from service.observability.context import request_id


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id.get(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class _Marker(logging.StreamHandler):
    """Our handler, recognised so that configuring twice adds no second one."""


def configure_logging(level: int = logging.INFO, fmt: str = "json") -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _Marker):
            root.removeHandler(handler)
    handler = _Marker(sys.stderr)
    handler.setFormatter(
        JSONFormatter()
        if fmt == "json"
        else logging.Formatter("%(levelname)s %(name)s: %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(level)
