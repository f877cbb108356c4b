"""Service settings from the environment (prefix ``REGLAB_``), one pydantic-settings class."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REGLAB_", extra="ignore")

    database_url: str = "sqlite:///./var/reglab.db"
    #: None means the embedded broker: kombu's filesystem transport under ``broker_dir``.
    broker_url: str | None = None
    broker_dir: Path = Path("./var/broker")
    #: a local folder, or ``s3://bucket/prefix``.
    artifacts: str = "./var/artifacts"
    cache_dir: Path = Path("./var/cache")
    #: the worker's local working folders (one per experiment; checkpoints are uploaded from here)
    scratch_dir: Path = Path("./var/scratch")
    #: torch CPU threads of a worker's runs; None lets regcore choose (1 for small models)
    worker_threads: int | None = None
    #: a worker touches this file every few seconds while it is alive (idle, or renewing a run's
    #: lease); the container healthcheck reads its age
    worker_heartbeat_file: Path = Path("/tmp/reglab-worker-alive")
    #: a worker serves its own Prometheus metrics (its lease renewals) at
    #: ``http://<worker_metrics_addr>:<port>/metrics``; None: not served
    worker_metrics_port: int | None = Field(default=None, ge=0, le=65535)
    worker_metrics_addr: str = "127.0.0.1"
    lease_seconds: int = 60
    heartbeat_seconds: int = 10
    max_attempts: int = 3
    reconcile_seconds: int = 15
    #: a queued row whose message was sent this long ago is sent again: a broker restarted
    #: without persistence (Redis without AOF) forgets its messages. Duplicates are harmless.
    stale_queued_seconds: int = 600
    #: where ``device: auto`` experiments go; "gpu" only when a GPU worker pool exists.
    auto_queue: Literal["cpu", "gpu"] = "cpu"
    api_url: str = "http://127.0.0.1:8000"
    max_spec_bytes: int = 65536
    #: submits (experiments and sweeps) per second per API key, and the burst allowed; 0: off
    submit_rate: float = 10.0
    submit_burst: int = 200
    #: the largest dataset file ``POST /v1/datasets`` takes, and what its arrays may expand to
    max_dataset_bytes: int = Field(default=256 * 1024 * 1024, ge=1)
    #: API keys: "on" always, "off" never, "auto" on unless ``bind_host`` is a loopback address.
    auth: Literal["on", "off", "auto"] = "auto"
    #: the address ``reglab serve --host`` binds; "auto" auth decides from it.
    bind_host: str = "127.0.0.1"
    #: Host names (besides localhost, 127.0.0.0/8 and [::1]) that a request without a key may
    #: name, comma-separated in the environment; "*" allows any. Guards against DNS rebinding.
    allowed_hosts: Annotated[list[str], NoDecode] = []
    #: the reconciler deletes a local store's ``.part`` files (left by a killed upload) this old
    partial_file_seconds: int = 3600
    #: run log lines kept per experiment (the newest; ``GET /v1/experiments/{id}/logs``)
    max_log_lines: int = 10000
    #: memory one job may use on a worker: admission refuses specs estimated above it
    #: (regcore.memory_estimate); None means 80% of this machine's (or container's) memory
    worker_memory_bytes: int | None = Field(default=None, ge=1)
    #: "process": each job runs in a child process of the worker (a crash or out-of-memory kill
    #: ends that job alone); "inline": in the worker's own process (tests, debugging); "auto":
    #: process, except on SQLite (the embedded default), whose file lock two writing processes
    #: per job contend for
    worker_isolation: Literal["auto", "process", "inline"] = "auto"
    #: after a cancel (or a lost lease) a job's process that has not stopped by itself within
    #: this many seconds is killed
    cancel_grace_seconds: float = Field(default=3.0, ge=0.0)
    #: an address-space cap (RLIMIT_AS, as ``prlimit --as``) on each job's process, so a job
    #: that outgrows it fails with MemoryError instead of waking the kernel's OOM killer; CPU
    #: jobs only (CUDA reserves address space it never uses). None: no cap
    job_memory_limit_bytes: int | None = Field(default=None, ge=1)
    #: a sweep's trials that share data, model and epochs run as packs of up to this many, one
    #: job each, on regcore's batched engine (``service.sweeps.packing``); None: 16 on the cpu
    #: queue, 64 on gpu; 1 turns packing off
    pack_size: int | None = Field(default=None, ge=1)

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [h.strip() for h in value.split(",") if h.strip()]
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
