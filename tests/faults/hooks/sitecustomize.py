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


# --- issue 16: faults inside one job's process ------------------------------------------------
#
# * ``REGLAB_FAULT_OOM_FILE=<path>``: once an epoch of an experiment listed in that file has been
#   recorded, the job's process (only it, as the kernel's OOM killer would) is SIGKILLed.
# * ``REGLAB_FAULT_STALL_DIR=<folder>``: a job named ``stall-<stage>`` stalls for two minutes,
#   deaf to any cancel check, in that stage: ``evaluate`` (the epoch's evaluation), ``measure``
#   (its measurements) or ``upload`` (a checkpoint upload); it writes ``<folder>/<stage>`` first.

_job_name: list[str] = [""]


def _oom(path: str) -> None:
    from worker import reporter

    real_on_epoch = reporter.DbReporter.on_epoch

    def on_epoch(self, epoch: int, metrics: dict) -> None:
        real_on_epoch(self, epoch, metrics)
        if self.id in (Path(path).read_text().split() if Path(path).exists() else []):
            sys.stderr.write("fault injection: SIGKILL of the job's process\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    reporter.DbReporter.on_epoch = on_epoch  # type: ignore[method-assign]


def _stall(folder: str) -> None:
    import time

    from regcore.measures import Measures
    from regcore.training import loop
    from worker import artifacts, tasks

    def stall(stage: str) -> None:
        if _job_name[0] == f"stall-{stage}":
            Path(folder, stage).write_text(str(time.time()))
            sys.stderr.write(f"fault injection: stalling in {stage}\n")
            time.sleep(120)

    real_execute = tasks.execute_claimed

    def execute_claimed(ctx, job, reporter):  # type: ignore[no-untyped-def]
        _job_name[0] = str((job.spec or {}).get("name", ""))
        return real_execute(ctx, job, reporter)

    real_evaluate, real_compute = loop.evaluate, Measures.compute
    real_put = artifacts.LocalStore.put

    def evaluate(*args, **kwargs):  # type: ignore[no-untyped-def]
        stall("evaluate")
        return real_evaluate(*args, **kwargs)

    def compute(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        stall("measure")
        return real_compute(self, *args, **kwargs)

    def put(self, local_path, key):  # type: ignore[no-untyped-def]
        stall("upload")
        return real_put(self, local_path, key)

    tasks.execute_claimed = execute_claimed  # type: ignore[assignment]
    loop.evaluate = evaluate  # type: ignore[assignment]
    Measures.compute = compute  # type: ignore[method-assign]
    artifacts.LocalStore.put = put  # type: ignore[method-assign]


if os.environ.get("REGLAB_FAULT_OOM_FILE"):
    _oom(os.environ["REGLAB_FAULT_OOM_FILE"])
if os.environ.get("REGLAB_FAULT_STALL_DIR"):
    _stall(os.environ["REGLAB_FAULT_STALL_DIR"])
# * ``REGLAB_FAULT_ENOSPC=<epoch>``: in a job named ``store-full``, every checkpoint upload from
#   that epoch on writes half its file under the temporary name, then fails with ENOSPC, as a
#   full volume does.


def _enospc(from_epoch: int) -> None:
    """The store's own copy (``shutil.copyfile`` into the ``.part`` name) runs out of space
    halfway; ``LocalStore.put`` itself must clean up and fail."""
    import errno
    import re
    import shutil

    real_copyfile = shutil.copyfile

    def copyfile(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
        epoch = re.search(r"-(\d{4})\.", Path(dst).name)
        if (_job_name[0] == "store-full" and str(dst).endswith(".part") and epoch
                and int(epoch.group(1)) >= from_epoch):  # fmt: skip
            data = Path(src).read_bytes()
            Path(dst).write_bytes(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real_copyfile(src, dst, *args, **kwargs)

    shutil.copyfile = copyfile  # type: ignore[assignment]


if os.environ.get("REGLAB_FAULT_ENOSPC"):
    _stall_names_only = not os.environ.get("REGLAB_FAULT_STALL_DIR")
    if _stall_names_only:  # the job's name is recorded by the stall hook's wrapper
        from worker import tasks as _tasks

        _real_execute = _tasks.execute_claimed

        def _named_execute(ctx, job, reporter):  # type: ignore[no-untyped-def]
            _job_name[0] = str((job.spec or {}).get("name", ""))
            return _real_execute(ctx, job, reporter)

        _tasks.execute_claimed = _named_execute  # type: ignore[assignment]
    _enospc(int(os.environ["REGLAB_FAULT_ENOSPC"]))


# --- issue 16: a worker whose clock is off ------------------------------------------------------
#
# * ``REGLAB_FAULT_CLOCK_OFFSET_S=<seconds>``: this process's wall clock reads that many seconds
#   ahead (negative: behind): ``time.time``, ``time.time_ns`` and the product's one reading of
#   the date and time, ``service.db.models.utcnow`` (``datetime.now(UTC)``; nothing else in
#   service/ or worker/ reads it). It is patched before anything imports it by name.
#   ``datetime.datetime`` itself is left alone: a subclass in its place breaks pickling and the
#   type checks of C extensions. The job processes the worker starts load this file too, so
#   they are off by as much; the monotonic clock is left alone, as a wrong wall clock leaves it.


def _clock_offset(seconds: float) -> None:
    import time
    from datetime import timedelta

    from service.db import models

    real_time, real_time_ns, real_utcnow = time.time, time.time_ns, models.utcnow
    skew = timedelta(seconds=seconds)
    time.time = lambda: real_time() + seconds  # type: ignore[assignment]
    time.time_ns = lambda: real_time_ns() + int(seconds * 1e9)  # type: ignore[assignment]
    models.utcnow = lambda: real_utcnow() + skew  # type: ignore[assignment]


if os.environ.get("REGLAB_FAULT_CLOCK_OFFSET_S"):
    _clock_offset(float(os.environ["REGLAB_FAULT_CLOCK_OFFSET_S"]))
