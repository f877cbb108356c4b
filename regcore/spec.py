"""The experiment spec (CONTRACT §1): one pydantic model shared by the CLI, the API and the worker.

Pydantic only: the API imports this module and must never load torch.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias, TypeVar, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from regcore import regularizer_specs as r

M = TypeVar("M", bound=BaseModel)

# --- data -------------------------------------------------------------------------------------

DatasetName = Literal["mnist1d", "digits", "wine", "breast_cancer", "toy1d", "moons"]
#: ``upload``: a dataset sent to ``POST /v1/datasets``, by id; ``file``: a local file (``reglab
#: run`` only; a path in a spec sent over HTTP is refused)
DataSourceName = Literal[
    "mnist1d", "digits", "wine", "breast_cancer", "toy1d", "moons", "upload", "file"
]
#: what the rows of an uploaded or local dataset are: tables (N, F), signals (N, L) or (N, C, L),
#: images (N, H, W) or (N, C, H, W)
DataKind = Literal["table", "signal", "image"]
#: a dataset or checkpoint id (uuid4 hex, as experiment ids)
RESOURCE_ID = re.compile(r"^[0-9a-f]{32}$")

#: bounds that keep one spec from exhausting a worker (a 422 instead of an out-of-memory kill)
MAX_WIDTH, MAX_CHANNELS, MAX_DEPTH = 8192, 1024, 32
MAX_PARAMETERS = 50_000_000
MAX_EXAMPLES = 200_000


#: examples each built-in dataset holds; None means generated on demand (any size).
DATASET_SIZES: dict[str, int | None] = {
    "mnist1d": None,
    "digits": 1797,
    "wine": 178,
    "breast_cancer": 569,
    "toy1d": None,
    "moons": None,
}
#: input features of each built-in dataset (fixed by the data, whatever the sizes).
DATASET_FEATURES = {
    "mnist1d": 40,
    "digits": 64,
    "wine": 13,
    "breast_cancer": 30,
    "toy1d": 1,
    "moons": 2,
}
#: outputs of each built-in dataset's model (classes; 1 for regression).
DATASET_OUTPUTS = {
    "mnist1d": 10,
    "digits": 10,
    "wine": 3,
    "breast_cancer": 2,
    "toy1d": 1,
    "moons": 2,
}
#: default split sizes of generated datasets (n_train, n_val, n_test).
GENERATED_DEFAULTS = {
    "mnist1d": (3500, 500, 1000),
    "toy1d": (30, 30, 200),
    "moons": (200, 100, 500),
}


@dataclass(frozen=True)
class DataInfo:
    """What validation needs to know of an uploaded or local dataset (its arrays' shapes)."""

    task: str  # classification | regression
    kind: str  # table | signal | image
    shape: tuple[int, ...]  # x's shape, rows first
    classes: int | None  # K for classification, None for regression
    n_test: int = 0  # rows of the file's own test arrays (0: the test split is carved)

    @property
    def rows(self) -> int:
        return self.shape[0]

    @property
    def features(self) -> int:
        return math.prod(self.shape[1:])

    @property
    def outputs(self) -> int:
        return self.classes or 1

    @property
    def channels(self) -> int:
        """Channels of an (N, C, L) signal or (N, C, H, W) image; 1 otherwise."""
        spatial = {"table": 1, "signal": 1, "image": 2}[self.kind]
        return self.shape[1] if len(self.shape) == 2 + spatial else 1


class DataSpec(BaseModel):
    """Which dataset, how much of it, and how it is corrupted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: DataSourceName
    id: str | None = Field(
        None, pattern=RESOURCE_ID.pattern, description="upload: the id POST /v1/datasets gave"
    )
    path: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="file: a local .npz, .csv or .parquet file (reglab run only, never over HTTP)",
    )
    task: Literal["classification", "regression"] | None = Field(
        None, description="file: the task (default classification)"
    )
    target: str | None = Field(
        None, min_length=1, max_length=200, description="file: the label column of a table"
    )
    kind: DataKind | None = Field(
        None, description="file: table, signal or image (default from the file; see docs)"
    )
    n_train: int | None = Field(
        None, ge=1, le=MAX_EXAMPLES, description="training examples (small-data regime)"
    )
    n_val: int | None = Field(
        None, ge=1, le=MAX_EXAMPLES, description="validation examples, carved from train"
    )
    n_test: int | None = Field(None, ge=1, le=MAX_EXAMPLES, description="test examples")
    n_unlabeled: int | None = Field(
        None,
        ge=1,
        le=MAX_EXAMPLES,
        description="extra training inputs whose labels are withheld (semi-supervised "
        "regularizers and self_supervised pretraining read them)",
    )
    label_noise: float = Field(
        0.0, ge=0.0, lt=1.0, description="fraction of training labels replaced by a random class"
    )
    standardize: bool = Field(True, description="standardize features (fit on train only)")
    noise: float = Field(0.1, ge=0.0, description="observation noise of toy1d and moons")

    # no return annotation: the serialization schema stays this model's (OpenAPI)
    @model_serializer(mode="wrap")
    def _dump(self, handler):  # type: ignore[no-untyped-def]
        return _without_defaults(self, handler(self), ("n_unlabeled",))

    @model_validator(mode="after")
    def _fits(self, info: ValidationInfo) -> DataSpec:
        _check_source(self, info.context)
        total = DATASET_SIZES.get(self.name)
        facts = data_info(self, info.context)
        if facts is not None:
            total = facts.rows + facts.n_test
        if total is not None:
            carved = (self.n_train, self.n_val, self.n_test, self.n_unlabeled)
            asked = sum(n for n in carved if n is not None)
            if asked > total:
                raise ValueError(
                    f"n_train + n_val + n_test{' + n_unlabeled' if self.n_unlabeled else ''} = "
                    f"{asked} exceeds the {total} examples of {self.name}"
                )
        regression = self.name == "toy1d" or (facts is not None and facts.task == "regression")
        if self.label_noise > 0 and regression:
            raise ValueError(
                f"label_noise applies to classification datasets; {self.name} is regression"
            )
        return self


#: the unlabelled batch beside each labelled one is at most this many times the labelled batch
UNLABELED_BATCH_RATIO = 16


def unlabeled_batch_size(batch_size: int, n_train: int, n_unlabeled: int) -> int:
    """Rows of the unlabelled batch beside each labelled batch: ⌈B·U/N⌉ (an epoch then sees as
    many unlabelled rows as the pool holds), at most ``UNLABELED_BATCH_RATIO``·B and U."""
    b = min(batch_size, n_train)
    return min(n_unlabeled, math.ceil(b * n_unlabeled / n_train), UNLABELED_BATCH_RATIO * b)


def _without_defaults(model: BaseModel, out: Any, keys: Sequence[str]) -> Any:
    """A dump with the fields ``keys`` left out while at their defaults: specs written before
    those fields existed keep their hash (resume, caches)."""
    if isinstance(out, dict):
        fields = type(model).model_fields
        for key in keys:
            if getattr(model, key) == fields[key].get_default(call_default_factory=True):
                out.pop(key, None)
    return out


def data_key(data: DataSpec) -> str | None:
    """The key of an uploaded or local dataset in the validation context's ``datasets``."""
    if data.name == "upload":
        return data.id
    if data.name == "file":
        return f"file:{data.path}"
    return None


def data_info(data: DataSpec, context: Any) -> DataInfo | None:
    """The shapes of an uploaded or local dataset when the validation context holds them."""
    key = data_key(data)
    if key is None or not isinstance(context, dict):
        return None
    return (context.get("datasets") or {}).get(key)


def _check_source(data: DataSpec, context: Any) -> None:
    """upload needs an id, file a path (and only locally), the built-ins neither. ``parse_spec``
    always passes a context; a spec re-validated inside regcore (no context) was parsed before."""
    extra = {
        "upload": ("path", "task", "target", "kind"),
        "file": ("id",),
    }.get(data.name, ("id", "path", "task", "target", "kind"))
    given = [f for f in extra if getattr(data, f) is not None]
    if given:
        raise ValueError(f"{given[0]}: does not apply to data {data.name}")
    if data.name == "upload" and data.id is None:
        raise ValueError("id: upload needs the id of a dataset from POST /v1/datasets")
    if data.name == "file":
        if data.path is None:
            raise ValueError("path: file needs the path of a local .npz, .csv or .parquet file")
        if isinstance(context, dict) and not context.get("local"):
            raise ValueError(
                "path: a file path is accepted by reglab run only; upload the file with "
                "POST /v1/datasets (reglab datasets upload) and use "
                '{"name": "upload", "id": ...}'
            )
    if data.name in ("upload", "file") and data.n_unlabeled is not None:
        raise ValueError(f"n_unlabeled: applies to the built-in datasets, not {data.name}")
    if data.name in ("upload", "file") and data.noise != 0.1:
        raise ValueError(f"noise: applies to toy1d and moons, not {data.name}")


# --- models -----------------------------------------------------------------------------------

Activation = Literal["relu", "tanh", "gelu", "sigmoid", "leaky_relu", "elu"]


class _ModelBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LinearModelSpec(_ModelBase):
    """A linear (logistic / least-squares) model."""

    name: Literal["linear"] = "linear"


class MLPSpec(_ModelBase):
    """A multilayer perceptron."""

    name: Literal["mlp"] = "mlp"
    hidden: list[Annotated[int, Field(ge=1, le=MAX_WIDTH)]] = Field(
        default_factory=lambda: [100, 100], max_length=MAX_DEPTH
    )
    activation: Activation = "relu"
    batch_norm: bool = False


class CNN1DSpec(_ModelBase):
    """A 1D convolutional network (weight sharing along sequence-like inputs such as MNIST-1D)."""

    name: Literal["cnn1d"] = "cnn1d"
    channels: list[Annotated[int, Field(ge=1, le=MAX_CHANNELS)]] = Field(
        default_factory=lambda: [32, 32], min_length=1, max_length=MAX_DEPTH
    )
    kernel_size: int = Field(5, ge=1, le=255)
    hidden: list[Annotated[int, Field(ge=1, le=MAX_WIDTH)]] = Field(
        default_factory=lambda: [64], max_length=MAX_DEPTH
    )
    activation: Activation = "relu"
    batch_norm: bool = False
    residual: bool = Field(
        False, description="residual conv blocks after the first conv (for stochastic_depth)"
    )


class ResMLPSpec(_ModelBase):
    """A residual MLP: an input projection, ``blocks`` residual blocks, a linear head."""

    name: Literal["resmlp"] = "resmlp"
    width: int = Field(64, ge=1, le=MAX_WIDTH)
    blocks: int = Field(2, ge=1, le=MAX_DEPTH)
    activation: Activation = "relu"
    batch_norm: bool = False


class GRUSpec(_ModelBase):
    """A GRU reading each input as a sequence of single features (MNIST-1D: 40 steps)."""

    name: Literal["gru"] = "gru"
    hidden_size: int = Field(32, ge=1, le=MAX_WIDTH)


class TransformerSpec(_ModelBase):
    """A small pre-norm transformer encoder over patches of the input (tokens), mean-pooled."""

    name: Literal["transformer"] = "transformer"
    patch_size: int = Field(4, ge=1, description="features per token; must divide in_features")
    d_model: int = Field(32, ge=1, le=MAX_WIDTH)
    heads: int = Field(2, ge=1, le=64)
    layers: int = Field(2, ge=1, le=MAX_DEPTH)
    ff: int = Field(64, ge=1, le=MAX_WIDTH, description="width of each block's feed-forward layer")
    activation: Activation = "relu"

    @model_validator(mode="after")
    def _heads(self) -> TransformerSpec:
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by heads {self.heads}")
        return self


class CNN2DSpec(_ModelBase):
    """A small 2D convolutional network for images ((N, H, W) or (N, C, H, W) data, digits)."""

    name: Literal["cnn2d"] = "cnn2d"
    channels: list[Annotated[int, Field(ge=1, le=MAX_CHANNELS)]] = Field(
        default_factory=lambda: [16, 32], min_length=1, max_length=8
    )
    kernel_size: int = Field(3, ge=1, le=15, description="odd sizes keep the image size")
    pool: bool = Field(True, description="2×2 max pooling after each conv while the image allows")
    hidden: list[Annotated[int, Field(ge=1, le=MAX_WIDTH)]] = Field(
        default_factory=lambda: [64], max_length=MAX_DEPTH
    )
    activation: Activation = "relu"
    batch_norm: bool = False


ModelSpec = Annotated[
    LinearModelSpec | MLPSpec | CNN1DSpec | CNN2DSpec | ResMLPSpec | GRUSpec | TransformerSpec,
    Field(discriminator="name"),
]


# --- training ---------------------------------------------------------------------------------

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class TrainSpec(BaseModel):
    """Optimizer, schedule, batch size, epochs and device."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # default= by keyword: type checkers (dataclass_transform) see only that form as a default,
    # and TrainSpec() / EnsembleSpec() are called with no arguments
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(default=0.05, gt=0.0, le=10.0)
    momentum: float = Field(default=0.0, ge=0.0, lt=1.0, description="sgd only")
    nesterov: bool = Field(default=False, description="sgd only; needs momentum > 0")
    betas: tuple[float, float] = Field(default=(0.9, 0.999), description="adam / adamw")
    batch_size: int = Field(default=100, ge=1, le=1_000_000)
    epochs: int = Field(default=20, ge=1, le=100_000, description="budget in epochs (or steps)")
    steps: int | None = Field(
        default=None,
        ge=1,
        le=10_000_000,
        description="budget in optimizer steps instead of epochs (give one of the two); metrics "
        "are then recorded at step numbers",
    )
    eval_every: int | None = Field(
        default=None,
        ge=1,
        le=10_000_000,
        description="with steps: evaluate every this many steps (default: once, at the end)",
    )
    stop_when_memorised: bool = Field(
        default=False,
        description="stop at the first evaluation where train_acc is 1.0 (classification)",
    )
    schedule: Literal["constant", "step", "cosine"] = "constant"
    step_size: int = Field(default=30, ge=1, description="step schedule: epochs between decays")
    gamma: float = Field(default=0.1, gt=0.0, le=1.0, description="step schedule: decay factor")
    device: str = Field(
        default="auto", description="auto (CUDA when present, else CPU), cpu, cuda, cuda:N"
    )
    threads: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="CPU threads; default 1 for small models, else all cores",
    )

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not DEVICE_PATTERN.match(v):
            raise ValueError("must be auto, cpu, cuda or cuda:N")
        return v

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError("each beta must be in [0, 1)")
        return v

    @model_validator(mode="after")
    def _nesterov(self) -> TrainSpec:
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError("nesterov needs optimizer sgd and momentum > 0")
        if self.steps is None and self.eval_every is not None:
            raise ValueError(
                "eval_every: applies to a train.steps budget (an epochs budget evaluates "
                "once per epoch)"
            )
        if self.steps is not None:
            if "epochs" in self.model_fields_set:
                raise ValueError(
                    "steps: give the budget as train.epochs or as train.steps, not both"
                )
            if self.eval_every is not None and self.eval_every > self.steps:
                raise ValueError(f"eval_every: {self.eval_every} exceeds train.steps {self.steps}")
            if self.schedule != "constant":
                raise ValueError(
                    "schedule: a train.steps budget runs at a constant rate; the step and "
                    "cosine schedules count epochs"
                )
        return self

    @property
    def last_point(self) -> int:
        """The step of a full run's last metrics point: train.steps, else train.epochs."""
        return self.steps if self.steps is not None else self.epochs

    # no return annotation: the serialization schema stays this model's (OpenAPI)
    @model_serializer(mode="wrap")
    def _dump(self, handler):  # type: ignore[no-untyped-def]
        """A steps spec's dump leaves the unused ``epochs`` out, so that it validates again."""
        out = handler(self)
        if self.steps is not None:
            out.pop("epochs", None)
        for key in ("steps", "eval_every", "stop_when_memorised"):  # at their defaults: left out,
            if not out.get(key):  # so specs from before them keep their hash (resume, caches)
                out.pop(key, None)
        return out


class SnapshotSpec(BaseModel):
    """Snapshot ensemble (Huang et al. 2017): one run under a cyclic cosine lr; a member is kept
    at the end of each cycle."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cycles: int = Field(
        ..., ge=2, le=64, description="lr cycles = members; must divide train.epochs"
    )


class EnsembleSpec(BaseModel):
    """Ensembles of independently trained members (k = 1 means a single model)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    members: int = Field(default=1, ge=1, le=64, description="k; member i trains with seed + i")
    bagging: bool = Field(default=False, description="each member on a bootstrap resample of train")
    vary: list[dict[str, Any]] = Field(
        default_factory=list,
        description="hyper-ensemble: one spec override per member (merged into the spec)",
    )
    snapshot: SnapshotSpec | None = None
    combine: Literal["mean_prob", "mean_logit", "median", "vote"] = "mean_prob"
    batched: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="train same-architecture members as one vmapped model when supported",
    )

    @model_validator(mode="after")
    def _members(self) -> EnsembleSpec:
        if self.vary and len(self.vary) != self.members:
            raise ValueError(f"vary has {len(self.vary)} entries; members is {self.members}")
        if self.snapshot is not None:
            if self.members != 1 or self.bagging or self.vary:
                raise ValueError(
                    "snapshot makes its members from one run: leave members at 1 and drop "
                    "bagging and vary"
                )
        return self

    @property
    def size(self) -> int:
        return self.snapshot.cycles if self.snapshot is not None else self.members


# --- reusing models: transfer, multi-task, self-supervised, MC dropout ------------------------


class PretrainSpec(BaseModel):
    """Pretrain on a source, then fine-tune on ``data`` (Antczak §5 pretrains on synthetic data)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: DataSpec
    generator: dict[str, float | int | list[int]] = Field(
        default_factory=dict,
        description="mnist1d source only: generator settings (e.g. max_translation, "
        "iid_noise_scale, corr_noise_scale, shear_scale, scale_coeff)",
    )
    seed_offset: int = Field(1000, ge=1, description="source seed = seed + seed_offset")
    epochs: int | None = Field(None, ge=1, le=100_000, description="pretraining epochs")
    lr: float | None = Field(None, gt=0.0, le=10.0, description="pretraining lr")
    freeze: bool = Field(False, description="fine-tune the head only; the body stays fixed")
    body_lr_scale: float = Field(1.0, gt=0.0, le=1.0, description="body lr = lr · scale")
    reset_head: bool = Field(True, description="a fresh head for the target")

    @model_validator(mode="after")
    def _generator(self) -> PretrainSpec:
        if self.generator and self.source.name != "mnist1d":
            raise ValueError("generator settings apply to an mnist1d source only")
        allowed = set(MNIST1D_GENERATOR_KEYS)
        unknown = sorted(set(self.generator) - allowed)
        if unknown:
            raise ValueError(f"unknown generator setting(s) {unknown}; known: {sorted(allowed)}")
        _check_generator(self.generator)
        return self


#: each mnist1d generator setting: its type and inclusive bounds (the package's defaults are
#: template_len 12, padding [36, 60], scale_coeff 0.4, max_translation 48, corr_noise_scale 0.25,
#: iid_noise_scale 0.02, shear_scale 0.75). Each example is a signal of template_len +
#: padding[1] samples before subsampling to 40: its length is bounded too, so generating the data
#: takes seconds, not the hours (and gigabytes) padding [36, 3000000] did.
MNIST1D_GENERATOR_BOUNDS: dict[str, tuple[type, float, float]] = {
    "template_len": (int, 1, 512),
    "padding": (list, 0, 2048),
    "scale_coeff": (float, 0.0, 2.0),
    "max_translation": (int, 1, 2048),
    "corr_noise_scale": (float, 0.0, 10.0),
    "iid_noise_scale": (float, 0.0, 10.0),
    "shear_scale": (float, 0.0, 10.0),
}
MNIST1D_GENERATOR_KEYS = tuple(MNIST1D_GENERATOR_BOUNDS)
MAX_GENERATED_LENGTH = 2048


def _check_generator(generator: dict[str, Any]) -> None:
    for key, value in generator.items():
        kind, low, high = MNIST1D_GENERATOR_BOUNDS[key]
        where = f"generator.{key}"
        if kind is list:
            if not isinstance(value, list) or len(value) != 2 or value[0] > value[1]:
                raise ValueError(f"{where}: must be [low, high] with low <= high, got {value!r}")
            values = value
        elif isinstance(value, list) or (kind is int and not isinstance(value, int)):
            raise ValueError(f"{where}: must be {'an integer' if kind is int else 'a number'}")
        else:
            values = [value]
        if any(not low <= v <= high for v in values):
            raise ValueError(f"{where}: {value!r} is outside [{low:g}, {high:g}]")
    length = int(generator.get("template_len", 12)) + int(generator.get("padding", [36, 60])[1])
    if length > MAX_GENERATED_LENGTH:
        raise ValueError(
            f"generator.padding: template_len + padding[1] = {length} samples per "
            f"signal; at most {MAX_GENERATED_LENGTH}"
        )


class MultitaskSpec(BaseModel):
    """An auxiliary head on a second target, trained beside the main head (Prince §9.3.6)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: Literal["shift", "peak"] = Field(
        "shift", description="shift: mnist1d generator's translation; peak: argmax position of x"
    )
    weight: float = Field(0.5, ge=0.0, le=100.0, description="λ of the auxiliary loss")


class SelfSupervisedSpec(BaseModel):
    """Self-supervised pretraining on the training (and unlabelled) inputs, then fine-tuning:
    masked-input reconstruction, or contrastive (SimCLR's NT-Xent on two augmented views)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["masked", "contrastive"] = "masked"
    mask: float = Field(0.25, gt=0.0, lt=1.0, description="masked: fraction of features masked")
    temperature: float = Field(0.2, gt=0.0, le=10.0, description="contrastive: NT-Xent's τ")
    projection: int = Field(
        64, ge=1, le=MAX_WIDTH, description="contrastive: width of the projection the loss reads"
    )
    views: r.AugmentSpec = Field(
        default_factory=r._contrastive_views,
        description="contrastive: the transforms that make each view",
    )
    batch_size: int | None = Field(
        None, ge=2, le=1_000_000, description="pretraining batch (default train.batch_size)"
    )
    epochs: int = Field(20, ge=1, le=100_000)
    lr: float | None = Field(None, gt=0.0, le=10.0)
    freeze: bool = False

    @model_serializer(mode="wrap")
    def _dump(self, handler):  # type: ignore[no-untyped-def]
        added = ("mode", "temperature", "projection", "views", "batch_size")  # with contrastive
        return _without_defaults(self, handler(self), added)


class MCDropoutSpec(BaseModel):
    """Dropout at evaluation: T stochastic passes (sampled sub-networks) beside the weight-scaling
    pass, combined by the arithmetic mean of their probabilities (Monte Carlo dropout, Gal &
    Ghahramani 2016; keys mc_*) or their normalized geometric mean (keys gm_*)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    passes: int = Field(30, ge=2, le=10_000)
    rule: Literal["arithmetic", "geometric"] = Field(
        "arithmetic",
        description="arithmetic: mean probability (mc_*); geometric: softmax of the mean logits, "
        "the normalized geometric mean of the passes' probabilities (gm_*)",
    )


# --- regularizers -----------------------------------------------------------------------------

# The union of every regularizer's parameter model, derived from the one list r.ALL (so adding a
# regularizer touches its spec class, its implementation and its test). mypy cannot read a union
# built at run time, so it sees the common base; narrow with isinstance where a field is read.
if TYPE_CHECKING:
    RegularizerUnion: TypeAlias = r.RegularizerSpec
else:
    RegularizerUnion = Union[r.ALL]  # noqa: UP007 (a tuple of classes: no | to spell it)
RegularizerSpec = Annotated[RegularizerUnion, Field(discriminator="name")]


def regularizer_spec_classes() -> list[type[r.RegularizerSpec]]:
    """Every regularizer's parameter model, in catalog order."""
    return list(r.ALL)


def regularizer_names() -> list[str]:
    return [cls.model_fields["name"].default for cls in regularizer_spec_classes()]


# --- the experiment ---------------------------------------------------------------------------

#: datasets whose examples are images, and the augment transforms for each kind of data
IMAGE_DATASETS = ("digits",)
IMAGE_AUGMENTS = ("translate", "rotate", "flip", "blur", "brightness", "scale", "noise")
SIGNAL_AUGMENTS = ("shift", "scale", "noise")

MeasureName = Literal[
    "lipschitz_bound",
    "grad_norm",
    "batch_grad_variance",
    "sharpness",
    "activation_sparsity",
    "confidence",
    "effective_l2",
    "fgsm_acc",
    "pgd_acc",
]


class AttackMeasureSpec(BaseModel):
    """``fgsm_acc`` / ``pgd_acc`` at a chosen strength: test accuracy under the attack (a bare
    name in ``measure`` takes these defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["fgsm_acc", "pgd_acc"]
    eps: float = Field(
        default=r.AdversarialSpec.model_fields["epsilon"].default,
        gt=0.0,
        le=100.0,
        description="L∞ radius ε, in standardized input units",
    )
    steps: int = Field(default=10, ge=1, le=1000, description="pgd_acc: projected ascent steps")
    step_size: float | None = Field(
        default=None, gt=0.0, le=100.0, description="pgd_acc: each step's size (2.5·ε/steps)"
    )
    key: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_]{0,99}$",
        description="the metric's key (default: the name); two entries need two keys",
    )

    @model_validator(mode="after")
    def _fgsm_is_one_step(self) -> AttackMeasureSpec:
        defaults = {"steps": type(self).model_fields["steps"].default, "step_size": None}
        if self.name == "fgsm_acc":  # by value: a dump holds the defaults and validates again
            given = [k for k, v in defaults.items() if getattr(self, k) != v]
            if given:
                raise ValueError(f"{given[0]} applies to pgd_acc; fgsm_acc is one step of size ε")
        return self


def _measure_tag(value: Any) -> str | None:
    """A bare name, or an attack's object by its name (None: neither, a clear error)."""
    if isinstance(value, str):
        return "named"
    name = value.get("name") if isinstance(value, dict) else getattr(value, "name", None)
    return name if name in ("fgsm_acc", "pgd_acc") else None


MeasureEntry = Annotated[
    Annotated[MeasureName, Tag("named")]
    | Annotated[AttackMeasureSpec, Tag("fgsm_acc")]
    | Annotated[AttackMeasureSpec, Tag("pgd_acc")],
    Discriminator(
        _measure_tag,
        custom_error_type="measure_entry",
        custom_error_message="a measurement is a name, or an object with name fgsm_acc or "
        "pgd_acc and its parameters",
    ),
]


def measure_key(entry: str | AttackMeasureSpec) -> str:
    """The metric key an entry of ``measure`` records."""
    if isinstance(entry, str):
        return entry
    return entry.key or entry.name


def measure_name(entry: str | AttackMeasureSpec) -> str:
    """Which measurement an entry of ``measure`` is."""
    return entry if isinstance(entry, str) else entry.name


class ExperimentSpec(BaseModel):
    """A whole experiment: data, model, training, regularizers. Only data and model are required."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("experiment", min_length=1, max_length=200)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    data: DataSpec
    model: ModelSpec
    train: TrainSpec = Field(default_factory=TrainSpec)
    regularizers: list[RegularizerSpec] = Field(default_factory=list, max_length=32)
    ensemble: EnsembleSpec = Field(default_factory=EnsembleSpec)
    pretrain: PretrainSpec | None = None
    multitask: MultitaskSpec | None = None
    self_supervised: SelfSupervisedSpec | None = None
    mc_dropout: MCDropoutSpec | None = None
    measure: list[MeasureEntry] = Field(
        default_factory=list,
        description="extra per-epoch measurements, by name or (fgsm_acc, pgd_acc) as an object "
        "with parameters; each one's cost is in timings.measure_s",
    )

    @model_validator(mode="after")
    def _compatible(self, info: ValidationInfo) -> ExperimentSpec:
        facts = data_info(self.data, info.context)
        regression = self.data.name == "toy1d" or (facts is not None and facts.task == "regression")
        features = facts.features if facts else DATASET_FEATURES.get(self.data.name)
        outputs = facts.outputs if facts else DATASET_OUTPUTS.get(self.data.name)
        _check_data_fits(self, facts)
        _check_references(self, info.context)
        n_params = estimated_parameters(self.model, features or 1, outputs or 1)
        if n_params > MAX_PARAMETERS:
            raise ValueError(
                f"model: about {n_params:,} parameters; a spec may have at most {MAX_PARAMETERS:,}"
            )
        if (
            isinstance(self.model, TransformerSpec)
            and features is not None
            and features % self.model.patch_size
        ):
            divisors = [d for d in range(1, features + 1) if features % d == 0]
            raise ValueError(
                f"model.patch_size: {self.model.patch_size} does not divide the {features} "
                f"input features of {self.data.name}; use one of {divisors}"
            )
        for i, reg in enumerate(self.regularizers):
            if regression and reg.classification_only:
                raise ValueError(
                    f"regularizers[{i}]: {reg.name} needs a classification dataset, "
                    f"and {self.data.name} is regression"
                )
        for i, reg in enumerate(self.regularizers):
            needs = reg.models
            if needs is not None and self.model.name not in needs:
                raise ValueError(
                    f"regularizers[{i}]: {reg.name} applies to the {' or '.join(needs)} model"
                    f"{'s' if len(needs) > 1 else ''}, not {self.model.name}"
                )
            if isinstance(reg, r.AugmentSpec):
                _check_transforms(f"regularizers[{i}].transforms", reg, self.data, facts)
            views = reg.views if isinstance(reg, r.ConsistencySpec | r.PseudoLabelSpec) else None
            if views is not None:
                _check_transforms(f"regularizers[{i}].views.transforms", views, self.data, facts)
            if reg.needs_unlabeled and self.data.n_unlabeled is None:
                raise ValueError(
                    f"regularizers[{i}]: {reg.name} {reg.needs_unlabeled}; set data.n_unlabeled"
                )
            if reg.name == "stochastic_depth" and self.model.name == "cnn1d":
                if not self.model.residual or len(self.model.channels) < 2:  # type: ignore[union-attr]
                    raise ValueError(
                        f"regularizers[{i}]: stochastic_depth needs residual blocks: set "
                        "model.residual to true and give model.channels at least two entries"
                    )
            if isinstance(reg, r.EarlyStoppingSpec):
                measured = [measure_key(m) for m in self.measure]
                _check_monitor(i, reg.monitor, regression, measured)
        ssl = self.self_supervised
        if ssl is not None and ssl.mode == "contrastive":
            _check_transforms("self_supervised.views.transforms", ssl.views, self.data, facts)
        names = [reg.name for reg in self.regularizers]
        if names.count("early_stopping") > 1:
            raise ValueError("early_stopping may appear at most once")
        _check_averaging(self.regularizers)
        _check_sam(self.regularizers)
        _check_bayes(self.regularizers, self.train)
        _check_laplace_size(self.regularizers, self.model, features, outputs)
        _check_steps_budget(self, regression)
        _check_measures(self.measure)
        _check_reuse(self, names, regression)
        return self

    def member_specs(self) -> list[ExperimentSpec]:
        """One spec per ensemble member: seed + i, ``vary[i]`` merged in, no ensemble section."""
        base = self.model_dump(mode="json", exclude={"ensemble"})
        out = []
        for i in range(self.ensemble.members):
            merged = _merge(
                {**base, "seed": self.seed + i}, self.ensemble.vary[i] if self.ensemble.vary else {}
            )
            out.append(ExperimentSpec.model_validate(merged))
        return out

    def spec_hash(self) -> str:
        """A stable hash of the canonical JSON form (defaults filled in)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Objects merge key by key; lists and scalars are replaced."""
    out = dict(base)
    for k, v in override.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def estimated_parameters(model: BaseModel, features: int, outputs: int) -> int:
    """The weight count of ``model`` on ``features`` inputs (biases and norms left out)."""

    def chain(widths: list[int]) -> int:
        return sum(a * b for a, b in zip(widths, widths[1:], strict=False))

    if isinstance(model, MLPSpec):
        return chain([features, *model.hidden, outputs])
    if isinstance(model, CNN1DSpec):
        convs = chain([1, *model.channels]) * model.kernel_size
        last = model.channels[-1] if model.channels else 1
        return convs + chain([last * features, *model.hidden, outputs])
    if isinstance(model, CNN2DSpec):  # the head is bounded by the unpooled image
        convs = chain([1, *model.channels]) * model.kernel_size**2
        return convs + chain([model.channels[-1] * features, *model.hidden, outputs])
    if isinstance(model, ResMLPSpec):
        return model.width * (features + 2 * model.blocks * model.width + outputs)
    if isinstance(model, GRUSpec):
        h = model.hidden_size
        return 3 * (h + h * h) + h * outputs
    if isinstance(model, TransformerSpec):
        d = model.d_model
        return model.patch_size * d + model.layers * (4 * d * d + 2 * d * model.ff) + d * outputs
    return features * outputs


#: per-epoch metrics every run records (CONTRACT §2); measurements add their own names
BASE_METRICS = (
    "train_loss",
    "val_loss",
    "test_loss",
    "gen_gap",
    "weight_l2",
    "weight_l1",
    "sparsity",
    "lr",
    "train_batch_loss",
)
CLASSIFICATION_METRICS = ("train_acc", "val_acc", "test_acc", "ece", "confidence")


#: models that read each kind of uploaded data (a table's columns have no order to convolve)
MODELS_FOR_KIND: dict[str, tuple[str, ...]] = {
    "table": ("linear", "mlp", "resmlp"),
    "signal": ("linear", "mlp", "resmlp", "cnn1d", "gru", "transformer"),
    "multichannel signal": ("linear", "mlp", "resmlp", "cnn1d"),
    "image": ("linear", "mlp", "resmlp", "cnn2d"),
}


def _kind_name(facts: DataInfo) -> str:
    if facts.kind == "signal" and facts.channels > 1:
        return "multichannel signal"
    return facts.kind


def augments_for(data: DataSpec, facts: DataInfo | None) -> tuple[tuple[str, ...], str]:
    """The augment transforms that apply to ``data``, and what the data is, in words."""
    if facts is None:
        if data.name in IMAGE_DATASETS:
            return IMAGE_AUGMENTS, "8×8 images"
        if data.name in ("upload", "file"):  # shapes unknown here: checked where they are known
            return (*IMAGE_AUGMENTS, "shift"), "uploaded data"
        return SIGNAL_AUGMENTS, "1D signals"
    shape = "×".join(str(d) for d in facts.shape[1:])
    if facts.kind == "image" and facts.channels == 1:
        return IMAGE_AUGMENTS, f"{shape} images"
    if facts.kind == "signal" and facts.channels == 1:
        return SIGNAL_AUGMENTS, f"1D signals of length {shape}"
    return ("scale", "noise"), f"{_kind_name(facts)} rows of shape {shape}"


def _check_transforms(
    where: str, augment: r.AugmentSpec, data: DataSpec, facts: DataInfo | None
) -> None:
    """The augment transforms (augment, the views of consistency, pseudo_label and contrastive
    pretraining) fit the data."""
    allowed, what = augments_for(data, facts)
    wrong = [t for t in augment.transforms if t not in allowed]
    if wrong:
        raise ValueError(
            f"{where}: {wrong} do not apply to {data.name} ({what}); use {list(allowed)}"
        )


def _check_data_fits(spec: ExperimentSpec, facts: DataInfo | None) -> None:
    """The model and the layout-bound regularizers fit the data; say which would."""
    model = spec.model.name
    if facts is None:
        if model == "cnn2d" and spec.data.name not in (*IMAGE_DATASETS, "upload", "file"):
            raise ValueError(
                f"model: cnn2d reads images; {spec.data.name} is not an image dataset "
                f"(images: {', '.join(IMAGE_DATASETS)} or an uploaded (N, H, W) array)"
            )
        return
    kind = _kind_name(facts)
    fits = MODELS_FOR_KIND[kind]
    shape = tuple(facts.shape[1:])
    if model not in fits:
        raise ValueError(
            f"model: {model} does not fit {kind} data of shape {shape}; use one of {list(fits)}"
        )
    if model == "cnn2d" and min(shape[-2:]) < 2:
        raise ValueError(f"model: cnn2d needs images of at least 2×2, not {shape}")
    layout = facts.channels == 1 and facts.kind in ("signal", "image")
    for i, reg in enumerate(spec.regularizers):
        if reg.needs_layout and not layout:
            raise ValueError(
                f"regularizers[{i}]: {reg.name} needs 1D signals or single-channel images; "
                f"this data is {kind} of shape {shape}"
            )


def _check_references(spec: ExperimentSpec, context: Any) -> None:
    """Over HTTP (a context without ``local``) a tie reference is a checkpoint id, never a path:
    the worker must open no file a request names."""
    if not isinstance(context, dict) or context.get("local"):
        return
    for i, reg in enumerate(spec.regularizers):
        ref = getattr(reg, "reference", None) if reg.name == "tie" else None
        if ref is not None and not RESOURCE_ID.match(ref):
            raise ValueError(
                f"regularizers[{i}].reference: give the id of a checkpoint of one of your "
                "experiments (GET /v1/experiments/{id}/checkpoints); paths are accepted by "
                "reglab run only"
            )


def _check_measures(entries: Sequence[str | AttackMeasureSpec]) -> None:
    """One key per measurement: an entry repeated as it is counts once, two that differ under
    one key are refused."""
    seen: dict[str, str | AttackMeasureSpec] = {}
    for i, entry in enumerate(entries):
        key = measure_key(entry)
        if key in seen and seen[key] != entry:
            raise ValueError(
                f"measure[{i}].key: {key!r} is already measured by another entry; give this one "
                "its own key"
            )
        seen[key] = entry


def _check_monitor(i: int, monitor: str, regression: bool, measures: Sequence[str]) -> None:
    known = [*BASE_METRICS, *(() if regression else CLASSIFICATION_METRICS), *measures]
    if monitor not in known and not monitor.startswith("penalty_"):
        raise ValueError(
            f"regularizers[{i}].monitor: {monitor!r} is not a metric this run records; "
            f"available: {', '.join(known)} (or penalty_<name>)"
        )


def _check_averaging(regs: Sequence[Any]) -> None:
    """swa and ema return their averaged weights, early stopping with restore_best the best raw
    ones: two answers to which model is kept, so the pair is refused (see swa.py, ema.py)."""
    es = next((i for i, reg in enumerate(regs) if reg.name == "early_stopping"), None)
    avg = next((i for i, reg in enumerate(regs) if reg.averages_weights), None)
    if es is not None and avg is not None and regs[es].restore_best:
        raise ValueError(
            f"regularizers[{es}].restore_best: early_stopping would restore the best raw weights, "
            f"but {regs[avg].name} (regularizers[{avg}]) returns its averaged weights; set "
            "restore_best to false to stop early and keep the average, or drop one of the two"
        )


def _check_steps_budget(spec: ExperimentSpec, regression: bool) -> None:
    """train.steps and stop_when_memorised (Fig. 9.5's protocol). A steps budget trains one
    model step by step; what counts epochs (an ensemble's lock-step, the transfer stages, swa's
    start, the retrain recipe) is refused beside it."""
    train = spec.train
    if train.stop_when_memorised and regression:
        raise ValueError(
            f"train.stop_when_memorised: reads train_acc, and {spec.data.name} is regression"
        )
    if train.steps is None:
        return
    if spec.ensemble.size > 1:
        raise ValueError(
            "train.steps: a steps budget trains a single model; set ensemble.members 1"
        )
    for section in ("pretrain", "self_supervised", "multitask"):
        if getattr(spec, section) is not None:
            raise ValueError(f"train.steps: {section} counts epochs; use train.epochs with it")
    names = [reg.name for reg in spec.regularizers]
    if "swa" in names:
        raise ValueError("train.steps: swa starts after a fraction of the epochs; use train.epochs")
    es = next((r for r in spec.regularizers if r.name == "early_stopping"), None)
    if es is not None and getattr(es, "retrain_on_train_val", False):
        raise ValueError(
            "train.steps: early_stopping.retrain_on_train_val retrains for the best epoch count; "
            "use train.epochs"
        )


def _check_bayes(regs: Sequence[Any], train: TrainSpec) -> None:
    """sgld's Langevin noise is calibrated to plain SGD steps and starts after its burn-in; one
    Bayesian method a run (each adds its own prior); bayes_by_backprop's posterior is over the
    weights themselves, not l0's gated ones."""
    names = [reg.name for reg in regs]
    found = [i for i, reg in enumerate(regs) if reg.bayesian]
    if len(found) > 1:
        raise ValueError(
            f"regularizers[{found[1]}]: {names[found[1]]} beside {names[found[0]]} "
            f"(regularizers[{found[0]}]); a run takes one Bayesian method"
        )
    for i in found:
        reg = regs[i]
        if reg.name == "sgld":
            if train.optimizer != "sgd" or train.momentum != 0:
                raise ValueError(
                    f"regularizers[{i}]: sgld's Langevin noise is scaled for plain SGD steps; "
                    "set train.optimizer to sgd and train.momentum to 0"
                )
            size, unit = (train.epochs, "epochs") if train.steps is None else (train.steps, "steps")
            if reg.burn_in_unit == unit and (reg.burn_in or 0) >= size:
                raise ValueError(
                    f"regularizers[{i}].burn_in: {reg.burn_in} {unit} leave none of "
                    f"train.{unit} {size} to sample in"
                )
            es = next((j for j, n in enumerate(names) if n == "early_stopping"), None)
            if es is not None and regs[es].restore_best:
                raise ValueError(
                    f"regularizers[{es}].restore_best: early_stopping would restore the best "
                    f"iterate, but sgld (regularizers[{i}]) returns its MAP estimate; set "
                    "restore_best to false or drop one of the two"
                )
        if reg.name == "bayes_by_backprop" and "l0" in names:
            raise ValueError(
                f"regularizers[{i}]: bayes_by_backprop's posterior is over the weights, and l0 "
                f"(regularizers[{names.index('l0')}]) gates them; drop one of the two"
            )


def head_width(model: BaseModel, features: int) -> int | None:
    """The width of the output layer's input, where the model spec alone says it."""
    if isinstance(model, MLPSpec):
        return model.hidden[-1] if model.hidden else features
    if isinstance(model, CNN1DSpec | CNN2DSpec):
        return model.hidden[-1] if model.hidden else None
    if isinstance(model, ResMLPSpec):
        return model.width
    if isinstance(model, GRUSpec):
        return model.hidden_size
    if isinstance(model, TransformerSpec):
        return model.d_model
    return features  # linear


def _check_laplace_size(
    regs: Sequence[Any], model: BaseModel, features: int | None, outputs: int | None
) -> None:
    """laplace's full Hessian is a (K·H)² matrix: refused over r.LAPLACE_MAX_FULL weights."""
    i = next((i for i, reg in enumerate(regs) if reg.name == "laplace"), None)
    if i is None or regs[i].hessian != "full" or features is None or outputs is None:
        return
    width = head_width(model, features)
    if width is not None and width * outputs > r.LAPLACE_MAX_FULL:
        raise ValueError(
            f"regularizers[{i}].hessian: full over the output layer's {width * outputs:,} "
            f"weights ({outputs} x {width}) exceeds {r.LAPLACE_MAX_FULL:,}; use diag"
        )


def _check_sam(regs: Sequence[Any]) -> None:
    """sam's second pass (and entropy_sgd's inner loop) re-evaluates only the data loss and
    assumes the rest of the objective is additive penalties; a transform of the loss (flooding)
    would get a wrong gradient. Each replaces the step's gradient: one of the two a run."""
    steppers = [i for i, reg in enumerate(regs) if reg.replaces_gradient]
    flood = next((i for i, reg in enumerate(regs) if reg.name == "flooding"), None)
    if len(steppers) > 1:
        i, j = steppers[:2]
        raise ValueError(
            f"regularizers[{j}]: {regs[j].name} and {regs[i].name} (regularizers[{i}]) each "
            "replace the gradient of the step; use one"
        )
    if steppers and flood is not None:
        sam = steppers[0]
        raise ValueError(
            f"regularizers[{flood}]: flooding transforms the loss, and {regs[sam].name} "
            f"(regularizers[{sam}]) recomputes only the untransformed data loss at other "
            "weights; drop one of the two"
        )


def _check_reuse(spec: ExperimentSpec, names: Sequence[str], regression: bool) -> None:
    """Checks of the ensemble, transfer and inference sections (issue 5)."""
    ens = spec.ensemble
    if ens.combine == "median" and not regression:
        raise ValueError(
            "ensemble.combine median is for regression; use mean_prob, mean_logit or vote"
        )
    if ens.combine == "vote" and regression:
        raise ValueError("ensemble.combine vote is for classification; use median or mean_prob")
    if ens.snapshot is not None and spec.train.epochs % ens.snapshot.cycles:
        raise ValueError(
            f"ensemble.snapshot.cycles {ens.snapshot.cycles} must divide "
            f"train.epochs {spec.train.epochs}"
        )
    for i, override in enumerate(ens.vary):
        bad = sorted(set(override) & {"data", "ensemble", "pretrain", "self_supervised"})
        if bad:
            raise ValueError(f"ensemble.vary[{i}]: members share {bad[0]}; it cannot vary")
        merged = _merge(spec.model_dump(mode="json", exclude={"ensemble"}), override)
        try:
            validate_strict(ExperimentSpec, merged)  # as strictly as the spec that holds it
        except ValidationError as err:
            detail = "; ".join(
                f"ensemble.vary[{i}].{e['field']}: {e['message']}"
                for e in describe_errors(err, merged)
            )
            raise ValueError(detail) from None
    reuse = [k for k in ("pretrain", "self_supervised") if getattr(spec, k) is not None]
    if len(reuse) > 1:
        raise ValueError("pretrain and self_supervised are two ways to pretrain; choose one")
    if (reuse or spec.multitask) and ens.size > 1:
        raise ValueError(
            f"{(reuse or ['multitask'])[0]} runs a single model; set ensemble.members to 1"
        )
    if spec.multitask is not None:
        if regression:
            raise ValueError(
                f"multitask adds an auxiliary head to a classifier; {spec.data.name} is regression"
            )
        if spec.multitask.target == "shift" and spec.data.name != "mnist1d":
            raise ValueError(
                "multitask.target shift is the mnist1d generator's; use peak for other data"
            )
    if spec.mc_dropout is not None and "dropout" not in names:
        raise ValueError("mc_dropout needs a dropout regularizer to sample from")
    es = next((r for r in spec.regularizers if r.name == "early_stopping"), None)
    if es is not None and getattr(es, "retrain_on_train_val", False):
        if reuse or spec.multitask or ens.size > 1:
            raise ValueError(
                "early_stopping.retrain_on_train_val runs a plain single model; drop the ensemble, "
                "pretrain, self_supervised and multitask sections"
            )


# --- error messages that name the field -------------------------------------------------------


def _path(loc: tuple[Any, ...], data: Any) -> str:
    """Render a pydantic error location as ``regularizers[1].p``.

    Discriminated unions put the tag (``dropout``) into the location; it is not a field, so it is
    dropped when the input at that point is an object whose ``name`` is that tag.
    """
    out = ""
    node = data
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str) and part not in node:
            if node.get("name") == part:
                continue
        if isinstance(node, str) and part == "named":  # a bare name in measure: no field
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    return out or "spec"


_BLAMED = re.compile(
    r"^((?:name|seed|data|model|train|regularizers|ensemble|measure|self_supervised)[\w.\[\]]*): "
    r"(.+)$",
    re.S,
)


_DATA_FIELD = re.compile(r"^(id|path|task|target|kind|noise|n_unlabeled): (.+)$", re.S)
_GENERATOR_FIELD = re.compile(r"^(generator\.\w+): (.+)$", re.S)
_TRAIN_FIELD = re.compile(r"^(steps|eval_every|schedule|stop_when_memorised): (.+)$", re.S)


def describe_errors(err: ValidationError, data: Any) -> list[dict[str, str]]:
    """Each error as ``{"field": "regularizers[1].p", "message": "..."}``."""
    out = []
    for e in err.errors(include_url=False):
        field = _path(tuple(e["loc"]), data)
        message = e["msg"].removeprefix("Value error, ")
        if e["type"] == "union_tag_invalid":
            ctx = e.get("ctx", {})
            field += f".{ctx.get('discriminator', 'name').strip(chr(39))}"
            message = f"unknown name {ctx.get('tag')!r}; known names: {ctx.get('expected_tags')}"
        # checks across fields say which one they blame as "path: message"
        blamed = _BLAMED.match(message)
        if blamed and not e["loc"]:
            field, message = blamed.group(1), blamed.group(2)
        sub = _DATA_FIELD.match(message)
        if sub and field.endswith(("data", "source")):  # a DataSpec check names its field
            field, message = f"{field}.{sub.group(1)}", sub.group(2)
        sub = _GENERATOR_FIELD.match(message)
        if sub and field == "pretrain":  # the generator check names its setting
            field, message = f"pretrain.{sub.group(1)}", sub.group(2)
        sub = _TRAIN_FIELD.match(message)
        if sub and field.endswith("train"):  # a TrainSpec check names its field
            field, message = f"{field}.{sub.group(1)}", sub.group(2)
        out.append({"field": field, "message": message})
    return out


def validate_strict(model: type[M], data: Any, context: dict[str, Any] | None = None) -> M:
    """``model`` from decoded JSON data, read as its JSON schema reads: no "3" or 3.0 for an
    integer, no 1 or "true" for a boolean, no 1 for a string; an integer is still a number and an
    array still fills a tuple.

    Pydantic's strict mode does exactly that on JSON input, while on Python objects it would also
    refuse a list for a tuple: so the data goes back to JSON text first (a spec is small). Raises
    ``ValidationError``, or ``ValueError`` for data that JSON cannot hold.
    """
    try:
        text = json.dumps(data)
    except (TypeError, ValueError, RecursionError) as err:
        raise ValueError(f"not JSON data: {err}") from None
    return model.model_validate_json(text, strict=True, context=context)


def parse_spec(
    data: Any, *, local: bool = False, datasets: Mapping[str, DataInfo] | None = None
) -> ExperimentSpec:
    """Validate a decoded JSON object strictly (``validate_strict``), the same for the CLI, the
    API and the worker; raises ``SpecError`` with field paths on failure.

    ``local`` (``reglab run`` only) accepts paths: ``"data": {"name": "file"}`` and a tie
    reference file; without it, as for every spec that came over HTTP, a path is refused.
    ``datasets``: the ``DataInfo`` of uploaded datasets by id, so the model and the regularizers
    are checked against their shapes (local files are read for theirs)."""
    found = dict(datasets or {})
    if local:
        from regcore.datafiles import local_file_infos  # numpy; only the CLI reads files

        found.update(local_file_infos(data))  # a file that fails its checks: SpecError
    context = {"local": local, "datasets": found}
    try:
        return validate_strict(ExperimentSpec, data, context)
    except ValidationError as err:
        raise SpecError(describe_errors(err, data)) from None
    except ValueError as err:
        raise SpecError([{"field": "spec", "message": str(err)}]) from None
    except (ArithmeticError, LookupError, TypeError) as err:
        # a cross-field check tripped over an input no field rule caught: still the spec's fault
        raise SpecError([{"field": "spec", "message": f"invalid spec ({err!r})"}]) from None


class SpecError(ValueError):
    """A spec that failed validation; ``errors`` name each field path."""

    def __init__(self, errors: list[dict[str, str]]):
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
