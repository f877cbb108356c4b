"""The database tables (SQLAlchemy 2.0). Every change here needs an Alembic revision."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})

JSONType = JSON().with_variant(JSONB(), "postgresql")
# SQLite only autoincrements an INTEGER PRIMARY KEY.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite stores naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        # SQLite compares timestamps as text: store them all in one zone, without an offset.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Experiment(Base):
    __tablename__ = "experiments"
    __table_args__ = (
        UniqueConstraint("owner", "idempotency_key"),
        # newest-first lists and their cursor (created_at, id)
        Index("ix_experiments_created_at_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), index=True, default="queued")
    queue: Mapped[str] = mapped_column(String(16), default="cpu")
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    spec_hash: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    last_epoch: Mapped[int] = mapped_column(Integer, default=0)
    total_epochs: Mapped[int] = mapped_column(Integer, default=0)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sweep_id: Mapped[str | None] = mapped_column(String(32), index=True)
    #: user labels (string to string, bounded: ``service/api/patch.py``) and a free-text note
    tags: Mapped[dict[str, str] | None] = mapped_column(JSONType)
    note: Mapped[str | None] = mapped_column(Text)
    #: what ran (``regcore.provenance.environment``); written by the worker at claim and end
    environment: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class Metric(Base):
    """One point: unique on (experiment, key, step), its primary key, whose index also serves
    reads by experiment and key (0008: no surrogate id beside it).

    No foreign key (0008: its check ran once per point): ``jobs.record_epochs`` writes points
    only for experiments whose row it just renewed and locked in the same transaction, and a
    trigger on ``experiments`` (``experiments_delete_metrics``, made by the migration) deletes a
    deleted experiment's points, as ON DELETE CASCADE did."""

    __tablename__ = "metrics"

    experiment_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[float] = mapped_column(Float)


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("experiment_id", "kind", "epoch"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    experiment_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("experiments.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    epoch: Mapped[int] = mapped_column(Integer)
    uri: Mapped[str] = mapped_column(String(500))
    state_uri: Mapped[str | None] = mapped_column(String(500))
    sidecar_uri: Mapped[str | None] = mapped_column(String(500))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiKey(Base):
    """An API key: only the SHA-256 of the token is stored; the token is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Sweep(Base):
    """A sweep: its request, its configurations, and how its experiments are launched."""

    __tablename__ = "sweeps"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str | None] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    #: running (experiments left to launch or to end) | completed | cancelled
    status: Mapped[str] = mapped_column(String(16), default="running", index=True)
    method: Mapped[str] = mapped_column(String(16))
    request: Mapped[dict[str, Any]] = mapped_column(JSONType)
    configs: Mapped[list[Any]] = mapped_column(JSONType)
    factors: Mapped[list[Any]] = mapped_column(JSONType)
    metric: Mapped[str] = mapped_column(String(100))
    mode: Mapped[str] = mapped_column(String(8))
    max_concurrent: Mapped[int] = mapped_column(Integer)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    early_stopping: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    tags: Mapped[dict[str, str] | None] = mapped_column(JSONType)
    note: Mapped[str | None] = mapped_column(Text)


class SweepTrial(Base):
    """One (configuration, seed) of a sweep; ``experiment_id`` is set when it is launched."""

    __tablename__ = "sweep_trials"

    sweep_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("sweeps.id", ondelete="CASCADE"), primary_key=True
    )
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    config: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    spec_hash: Mapped[str] = mapped_column(String(64))
    queue: Mapped[str] = mapped_column(String(16))
    total_epochs: Mapped[int] = mapped_column(Integer)
    experiment_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("experiments.id", ondelete="SET NULL"), unique=True
    )
    #: why early stopping ended it ("stopped by ASHA at epoch 3: ...")
    stop_reason: Mapped[str | None] = mapped_column(Text)


class MetricLatest(Base):
    """The newest value of each metric of each experiment, kept by ``jobs.record_epoch``, so
    experiments can be filtered and sorted by a metric without scanning every epoch.

    Each epoch updates every row's step and value: no index on them and half of each page left
    free on PostgreSQL (0008), so the updates are HOT (no index entries, the table does not
    grow). Search reaches the rows by the primary key from the experiments it tests, or reads
    one metric's rows through the index on ``key``, which an update never changes."""

    __tablename__ = "metric_latest"
    __table_args__ = (
        Index("ix_metric_latest_key", "key"),
        {"postgresql_with": {"fillfactor": 50}},
    )

    experiment_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    step: Mapped[int] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(Float)


class ExperimentParam(Base):
    """One scalar of an experiment's spec, by path (``service.db.params``), so experiments can
    be filtered by what was run through an index."""

    __tablename__ = "experiment_params"
    __table_args__ = (
        # a clause checked per experiment (few matches scanned newest first), and its cascade
        Index("ix_experiment_params_experiment_path", "experiment_id", "path"),
        # a selective clause answered from the index first
        Index("ix_experiment_params_path_num", "path", "num_value", "experiment_id"),
        Index("ix_experiment_params_path_str", "path", "str_value", "experiment_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    experiment_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("experiments.id", ondelete="CASCADE")
    )
    path: Mapped[str] = mapped_column(String(200))
    num_value: Mapped[float | None] = mapped_column(Float)
    str_value: Mapped[str | None] = mapped_column(String(200))


class RunLog(Base):
    """One log line of an experiment's runs (worker and regcore messages), numbered by ``seq``
    per experiment; only the newest ``REGLAB_MAX_LOG_LINES`` are kept (``service.db.logs``)."""

    __tablename__ = "run_logs"

    experiment_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    level: Mapped[str] = mapped_column(String(16))
    logger: Mapped[str] = mapped_column(String(200))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str] = mapped_column(Text)


class RunLogSeq(Base):
    """The newest seq of an experiment's run log lines: writers take seqs by an upsert of this
    row, whose lock orders their transactions (``service.db.logs``)."""

    __tablename__ = "run_log_seqs"

    experiment_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
    )
    last_seq: Mapped[int] = mapped_column(Integer)


class DatasetRow(Base):
    """An uploaded dataset (``POST /v1/datasets``): its canonical ``.npz`` is in the artifact
    store at ``datasets/<id>.npz``; the id comes from the owner and the content."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    task: Mapped[str] = mapped_column(String(16))
    #: table | signal | image
    kind: Mapped[str] = mapped_column(String(16))
    #: x's shape, rows first
    shape: Mapped[list[int]] = mapped_column(JSONType)
    classes: Mapped[int | None] = mapped_column(Integer)
    #: rows of the file's own test arrays (0: the test split is carved from x)
    test_rows: Mapped[int] = mapped_column(Integer, default=0)
    #: what was sent: npz, csv or parquet
    format: Mapped[str] = mapped_column(String(16))
    #: size and SHA-256 of the stored canonical file
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WorkerHeartbeat(Base):
    """A live worker process and the queues it consumes, renewed every few seconds
    (``worker.celery_app``); the reconciler counts a queue's consumers from it."""

    __tablename__ = "worker_heartbeats"

    worker: Mapped[str] = mapped_column(String(200), primary_key=True)
    #: comma-separated queue names
    queues: Mapped[str] = mapped_column(String(500))
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
