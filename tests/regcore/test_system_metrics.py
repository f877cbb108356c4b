"""system metrics: sys_* series per epoch in metrics.jsonl and through the reporter, when on."""

from __future__ import annotations

import json

import pytest
import torch

from regcore.experiment import run
from regcore.spec import parse_spec
from regcore.system_metrics import SystemMetrics, collecting, monitor
from regcore.training.reporter import NullReporter

SPEC = {
    "name": "sys",
    "data": {"name": "moons", "n_train": 120, "n_val": 40, "n_test": 40},
    "model": {"name": "mlp", "hidden": [8]},
    "train": {"epochs": 3, "batch_size": 40, "device": "cpu"},
}
CPU_KEYS = {"sys_cpu_percent", "sys_rss_mb", "sys_epoch_s"}


class Recorder(NullReporter):
    def __init__(self) -> None:
        self.epochs: dict[int, dict[str, float]] = {}

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self.epochs[epoch] = dict(metrics)


def _series(workdir) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for line in (workdir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out.setdefault(rec["key"], []).append((rec["step"], rec["value"]))
    return out


def test_each_epoch_gets_plausible_system_metrics_in_the_log_and_the_reporter(tmp_path, cache_dir):
    reporter = Recorder()
    run(parse_spec(SPEC), tmp_path, reporter=reporter, cache_dir=cache_dir, threads=1,
        checkpoint_every=0, system_metrics=True)  # fmt: skip
    series = _series(tmp_path)
    for key in CPU_KEYS:
        assert [s for s, _ in series[key]] == [1, 2, 3], key
    assert all(v > 1.0 for _, v in series["sys_rss_mb"])  # a process with torch loaded
    assert all(0 < v < 60 for _, v in series["sys_epoch_s"])
    assert all(v >= 0 for _, v in series["sys_cpu_percent"])
    assert "sys_gpu_mem_mb" not in series  # a CPU run
    for epoch, metrics in reporter.epochs.items():
        assert {k: v for k, v in metrics.items() if k in CPU_KEYS} == {
            k: dict(series[k])[epoch] for k in CPU_KEYS
        }


def test_they_are_off_unless_asked_for_so_seeded_runs_log_identical_files(tmp_path, cache_dir):
    spec = parse_spec(SPEC)
    for name in ("a", "b"):
        run(spec, tmp_path / name, cache_dir=cache_dir, threads=1, checkpoint_every=0)
    assert not any(k.startswith("sys_") for k in _series(tmp_path / "a"))
    assert (tmp_path / "a" / "metrics.jsonl").read_text() == (
        tmp_path / "b" / "metrics.jsonl"
    ).read_text()
    assert monitor() is None


def test_epoch_seconds_are_the_time_between_samples():
    now = [10.0]
    sampler = SystemMetrics("cpu", clock=lambda: now[0])
    now[0] = 12.5
    assert sampler.sample()["sys_epoch_s"] == pytest.approx(2.5)
    now[0] = 13.0
    first = sampler.sample()
    assert first["sys_epoch_s"] == pytest.approx(0.5) and first["sys_rss_mb"] > 0


def test_collecting_is_scoped_to_its_block():
    with collecting("cpu"):
        assert isinstance(monitor(), SystemMetrics)
    assert monitor() is None


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_run_also_reports_gpu_memory_and_utilization(tmp_path, cache_dir):
    spec = parse_spec({**SPEC, "train": {**SPEC["train"], "device": "cuda"}})
    run(spec, tmp_path, cache_dir=cache_dir, checkpoint_every=0, system_metrics=True)
    series = _series(tmp_path)
    assert all(v > 0 for _, v in series["sys_gpu_mem_mb"])
    assert all(0 <= v <= 100 for _, v in series["sys_gpu_util_percent"])


class FakeNvml:
    """The few pynvml calls SystemMetrics makes, recording the UUID it looked the device up by."""

    def __init__(self) -> None:
        self.looked_up: list[str] = []

    def nvmlInit(self) -> None:
        pass

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        self.looked_up.append(uuid)
        return "handle"

    def nvmlDeviceGetUtilizationRates(self, handle: str):
        assert handle == "handle"
        return type("Rates", (), {"gpu": 37, "memory": 5})()


def _fake_cuda(monkeypatch, nvml: FakeNvml | None) -> None:
    import sys

    props = type("Props", (), {"uuid": "1234-abcd"})()
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: props)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 3 * 2**20)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)  # None: not installed


def test_on_cuda_gpu_memory_and_nvml_utilization_of_the_runs_device(monkeypatch):
    nvml = FakeNvml()
    _fake_cuda(monkeypatch, nvml)
    sample = SystemMetrics("cuda:0").sample()
    assert nvml.looked_up == ["GPU-1234-abcd"]  # by UUID: CUDA_VISIBLE_DEVICES renumbers
    assert sample["sys_gpu_mem_mb"] == 3.0 and sample["sys_gpu_util_percent"] == 37.0
    assert CPU_KEYS <= set(sample)


def test_without_nvml_a_cuda_run_still_reports_gpu_memory(monkeypatch, caplog):
    _fake_cuda(monkeypatch, None)
    sample = SystemMetrics("cuda:0").sample()
    assert sample["sys_gpu_mem_mb"] == 3.0 and "sys_gpu_util_percent" not in sample
    assert "NVML is not usable" in caplog.text


def test_nvml_is_not_imported_for_a_cpu_run(monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, "pynvml", raising=False)
    SystemMetrics("cpu").sample()
    assert "pynvml" not in sys.modules
