"""System metrics of a training run, recorded per epoch as ordinary metric series.

* ``sys_cpu_percent``: this process's CPU use over the epoch (psutil; 100 = one core busy, so
  several threads can read above 100);
* ``sys_rss_mb``: its resident memory at the epoch's end, MiB;
* ``sys_epoch_s``: wall-clock seconds of the epoch, training and evaluation (the first epoch
  counts from the start of the loop);
* on CUDA, ``sys_gpu_mem_mb``: the memory torch's caching allocator holds on the run's device,
  MiB, and ``sys_gpu_util_percent``: the device's utilization as NVML reports it (nvidia-ml-py,
  the ``gpu`` extra; imported only when a run uses CUDA, and left out when it is not installed).

``regcore.experiment.run(..., system_metrics=True)`` turns them on for the run: it enters
``collecting(device)``, and each epoch's metrics log (``regcore.training.metrics_log.MetricsLog``,
which the driver writes before it reports the epoch) adds ``SystemMetrics.sample()`` to the
epoch's metrics, so ``metrics.jsonl`` and the reporter (the worker's database) both get them.
Off by default: they are measurements of the machine, not results, and differ run to run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import psutil
import torch

log = logging.getLogger(__name__)

_DEVICE: ContextVar[torch.device | None] = ContextVar("regcore_system_metrics", default=None)

MIB = 2.0**20


class _Nvml:
    """Utilization of one CUDA device through NVML, found by its UUID (CUDA_VISIBLE_DEVICES
    renumbers devices, so torch's index is not NVML's)."""

    def __init__(self, device: torch.device):
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
        self.nvml = pynvml
        index = device.index if device.index is not None else torch.cuda.current_device()
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        if uuid is not None:
            self.handle = pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
        else:
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)

    def utilization(self) -> float:
        return float(self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)


class SystemMetrics:
    """Samples the ``sys_*`` series; each ``sample()`` covers the time since the previous one."""

    def __init__(self, device: torch.device | str = "cpu", clock: Any = time.perf_counter):
        self.device = torch.device(device)
        self.clock = clock
        self.process = psutil.Process()
        self.process.cpu_percent(None)  # the first call only starts psutil's interval
        self.last = clock()
        self.nvml: _Nvml | None = None
        if self.device.type == "cuda":
            try:
                self.nvml = _Nvml(self.device)
            except Exception as err:  # noqa: BLE001 - no driver library, no extra: no util series
                log.warning("sys_gpu_util_percent is off: NVML is not usable (%s)", err)

    def sample(self) -> dict[str, float]:
        now = self.clock()
        out = {
            "sys_cpu_percent": float(self.process.cpu_percent(None)),
            "sys_rss_mb": self.process.memory_info().rss / MIB,
            "sys_epoch_s": now - self.last,
        }
        self.last = now
        if self.device.type == "cuda":
            out["sys_gpu_mem_mb"] = torch.cuda.memory_reserved(self.device) / MIB
            if self.nvml is not None:
                out["sys_gpu_util_percent"] = self.nvml.utilization()
        return out


@contextmanager
def collecting(device: torch.device | str) -> Iterator[None]:
    """Within this block, every metrics log that is opened samples system metrics."""
    token = _DEVICE.set(torch.device(device))
    try:
        yield
    finally:
        _DEVICE.reset(token)


def monitor() -> SystemMetrics | None:
    """A sampler for a metrics log opened now; None outside ``collecting``."""
    device = _DEVICE.get()
    return SystemMetrics(device) if device is not None else None
