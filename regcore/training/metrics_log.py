"""``metrics.jsonl``: a run's points, one ``{"step", "key", "value"}`` a line."""

from __future__ import annotations

import json
import os
from pathlib import Path

from regcore import system_metrics


class MetricsLog:
    """On resume, lines past the checkpoint's point are dropped so that no point is written
    twice; the ``sys_*`` series are sampled into each point when the run collects them."""

    def __init__(self, path: Path, keep_until: int):
        lines: list[str] = []
        if keep_until and path.exists():
            lines = [
                ln
                for ln in path.read_text().splitlines()
                if ln and json.loads(ln)["step"] <= keep_until
            ]
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text("".join(ln + "\n" for ln in lines))
        os.replace(tmp, path)
        self.file = open(path, "a")  # noqa: SIM115 - held for the whole run
        self.system = system_metrics.monitor()  # None unless the run collects sys_* series

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if self.system is not None:  # into the caller's dict: its reporter sends them too
            metrics.update(self.system.sample())
        for key, value in metrics.items():
            self.file.write(json.dumps({"step": step, "key": key, "value": value}) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()
