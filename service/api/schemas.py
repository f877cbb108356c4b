"""The response bodies of the API, as named pydantic models: the OpenAPI document types every
2xx body with these, and FastAPI checks each answer against them.

Lean list items (``ExperimentBrief``, ``SweepBrief``) carry what a table shows; the full records
(``Experiment``, ``Sweep``) what one run's page shows. ``GET /v1/experiments?view=full`` lists
full records.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class Progress(BaseModel):
    epoch: int = Field(description="epochs finished so far")
    epochs: int = Field(description="epochs the spec asks for")


class ExperimentBrief(BaseModel):
    """One row of a list: no spec, no summary, the headline metrics only."""

    model_config = ConfigDict(extra="forbid", title="ExperimentBrief")

    id: str
    name: str
    status: Status
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    metrics: dict[str, float | None] = Field(
        description="headline metrics of the summary (test_acc, test_loss, val_loss, ...)"
    )
    tags: dict[str, str]
    sweep_id: str | None
    progress: Progress


class Experiment(BaseModel):
    model_config = ConfigDict(title="Experiment")

    id: str
    name: str
    status: Status
    spec: dict[str, Any] = Field(description="the validated spec (ExperimentSpec), defaults filled")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    summary: dict[str, Any] | None = Field(
        description="the final summary: status, epochs_run, best_epoch, metrics"
    )
    error: str | None
    attempts: int
    cancel_requested: bool
    progress: Progress
    queue: str
    sweep_id: str | None
    tags: dict[str, str]
    note: str | None
    environment: dict[str, Any] | None = Field(
        default=None, description="versions, device, host, spec hash, dataset sha256"
    )


class ExperimentPage(BaseModel):
    items: list[ExperimentBrief | Experiment] = Field(
        description="ExperimentBrief items, or Experiment items with view=full"
    )
    next_cursor: str | None = Field(description="pass back as cursor for the next page")


class Point(BaseModel):
    step: int
    value: float | None = Field(description="null where the value was not finite")


class MetricSeries(BaseModel):
    series: dict[str, list[Point]]


class Checkpoint(BaseModel):
    id: str
    experiment_id: str
    epoch: int
    kind: str
    size: int
    sha256: str
    created_at: datetime
    url: str


class CheckpointList(BaseModel):
    items: list[Checkpoint]


class SweepTrial(BaseModel):
    idx: int
    config: int
    seed: int
    experiment_id: str | None
    status: str = Field(description="the experiment's status, or pending / skipped")
    stop_reason: str | None


class SweepBrief(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    status: str
    method: str
    created_at: datetime
    finished_at: datetime | None
    counts: dict[str, int]
    tags: dict[str, str]


class Sweep(BaseModel):
    id: str
    name: str
    status: str
    method: str
    metric: str
    mode: str
    max_concurrent: int
    early_stopping: dict[str, Any] | None
    factors: list[Any]
    created_at: datetime
    finished_at: datetime | None
    counts: dict[str, int]
    tags: dict[str, str]
    note: str | None
    experiments: list[SweepTrial]
    results: dict[str, Any] = Field(
        description="per configuration the mean and 95% interval over seeds, the best, effects"
    )


class SweepPage(BaseModel):
    items: list[SweepBrief]
    next_cursor: str | None


class AlignedSeries(BaseModel):
    steps: list[int]
    values: dict[str, list[float | None]] = Field(description="experiment id -> value per step")


class Comparison(BaseModel):
    items: list[Experiment]
    table: dict[str, dict[str, float | None]] = Field(description="metric -> id -> final value")
    series: dict[str, AlignedSeries]


class Regularizer(BaseModel):
    name: str
    description: str
    parameters: dict[str, Any] = Field(description="JSON schema of the entry's parameters")
    defaults: dict[str, Any]


class RegularizerList(BaseModel):
    items: list[Regularizer]


class BuiltinDataset(BaseModel):
    name: str
    task: Literal["classification", "regression"]
    size: int | None
    generated: bool
    default_splits: dict[str, int] | None


class BuiltinDatasetList(BaseModel):
    items: list[BuiltinDataset]
    parameters: dict[str, Any] = Field(description="JSON schema of the spec's data section")


class Health(BaseModel):
    status: Literal["ok"]


class ReadyChecks(BaseModel):
    database: Literal["ok", "unreachable"]
    broker: Literal["ok", "unreachable"]


class Readiness(BaseModel):
    """200 of ``/readyz``; a 503 is a problem+json with the same ``checks``."""

    status: Literal["ready"]
    checks: ReadyChecks


class LogLine(BaseModel):
    seq: int = Field(description="the line's number in the experiment's log, from 1")
    time: datetime | None
    level: str = Field(description="DEBUG, INFO, WARNING, ERROR or CRITICAL")
    logger: str
    attempt: int = Field(description="the attempt (claim) of the run that wrote the line")
    message: str


class LogPage(BaseModel):
    items: list[LogLine]
    next_since: int = Field(description="pass back as since for the lines after these")
    last_seq: int = Field(description="the newest line's seq (0 before any)")
    status: Status = Field(description="the experiment's status when the lines were read")
