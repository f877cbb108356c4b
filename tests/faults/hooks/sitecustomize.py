"""Fault injection for the fault tests, loaded only into the worker subprocesses they start
(this folder is put first on their PYTHONPATH; Python imports ``sitecustomize`` at startup).
Nothing of it is in the product code. Each fault is switched on by an environment variable:

* ``REGLAB_FAULT_CUT_PUT=<key suffix>``: the artifact store's upload of that key writes half of
  the file under its temporary name, then the whole worker is SIGKILLed: a checkpoint write
  killed halfway.
* ``REGLAB_FAULT_POISON_FILE=<path>``: once an epoch of an experiment whose id is listed in that
  file has been recorded, the worker SIGKILLs itself: a run that kills its worker every time.
"""

from __future__ import annotations

import os
import signal
import sys
import uuid
from pathlib import Path


def _die() -> None:
    sys.stderr.write("fault injection: SIGKILL\n")
    sys.stderr.flush()
    os.killpg(os.getpgrp(), signal.SIGKILL)


def _cut_put(suffix: str) -> None:
    from worker import artifacts

    real_put = artifacts.LocalStore.put

    def put(self, local_path: Path, key: str) -> None:
        if not key.endswith(suffix):
            return real_put(self, local_path, key)
        dest = self.path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
        data = Path(local_path).read_bytes()
        with open(tmp, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
        _die()

    artifacts.LocalStore.put = put  # type: ignore[method-assign]


def _poison(path: str) -> None:
    from worker import reporter

    real_on_epoch = reporter.DbReporter.on_epoch

    def on_epoch(self, epoch: int, metrics: dict) -> None:
        real_on_epoch(self, epoch, metrics)
        listed = Path(path).read_text().split() if Path(path).exists() else []
        if self.id in listed:
            _die()

    reporter.DbReporter.on_epoch = on_epoch  # type: ignore[method-assign]


if os.environ.get("REGLAB_FAULT_CUT_PUT"):
    _cut_put(os.environ["REGLAB_FAULT_CUT_PUT"])
if os.environ.get("REGLAB_FAULT_POISON_FILE"):
    _poison(os.environ["REGLAB_FAULT_POISON_FILE"])
