"""The experiment spec (CONTRACT §1): one pydantic model shared by the CLI, the API and the worker.

Pydantic only: the API imports this module and must never load torch.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from regcore import regularizer_specs as r

# --- data -------------------------------------------------------------------------------------

DatasetName = Literal["mnist1d", "digits", "wine", "breast_cancer", "toy1d", "moons"]

#: examples each built-in dataset holds; None means generated on demand (any size).
DATASET_SIZES: dict[str, int | None] = {
    "mnist1d": None,
    "digits": 1797,
    "wine": 178,
    "breast_cancer": 569,
    "toy1d": None,
    "moons": None,
}
#: default split sizes of generated datasets (n_train, n_val, n_test).
GENERATED_DEFAULTS = {"mnist1d": (3500, 500, 1000), "toy1d": (30, 30, 200), "moons": (200, 100, 500)}


class DataSpec(BaseModel):
    """Which dataset, how much of it, and how it is corrupted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: DatasetName
    n_train: int | None = Field(None, ge=1, description="training examples (small-data regime)")
    n_val: int | None = Field(None, ge=1, description="validation examples, carved from train")
    n_test: int | None = Field(None, ge=1, description="test examples")
    label_noise: float = Field(
        0.0, ge=0.0, lt=1.0, description="fraction of training labels replaced by a random class"
    )
    standardize: bool = Field(True, description="standardize features (fit on train only)")
    noise: float = Field(0.1, ge=0.0, description="observation noise of toy1d and moons")

    @model_validator(mode="after")
    def _fits(self) -> DataSpec:
        total = DATASET_SIZES[self.name]
        if total is not None:
            asked = sum(n for n in (self.n_train, self.n_val, self.n_test) if n is not None)
            if asked > total:
                raise ValueError(
                    f"n_train + n_val + n_test = {asked} exceeds the {total} examples of {self.name}"
                )
        if self.label_noise > 0 and self.name == "toy1d":
            raise ValueError("label_noise applies to classification datasets; toy1d is regression")
        return self


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
    hidden: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [100, 100])
    activation: Activation = "relu"
    batch_norm: bool = False


class CNN1DSpec(_ModelBase):
    """A 1D convolutional network (weight sharing along sequence-like inputs such as MNIST-1D)."""

    name: Literal["cnn1d"] = "cnn1d"
    channels: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [32, 32])
    kernel_size: int = Field(5, ge=1)
    hidden: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [64])
    activation: Activation = "relu"
    batch_norm: bool = False
    residual: bool = Field(
        False, description="residual conv blocks after the first conv (for stochastic_depth)"
    )


class ResMLPSpec(_ModelBase):
    """A residual MLP: an input projection, ``blocks`` residual blocks, a linear head."""

    name: Literal["resmlp"] = "resmlp"
    width: int = Field(64, ge=1)
    blocks: int = Field(2, ge=1)
    activation: Activation = "relu"
    batch_norm: bool = False


class GRUSpec(_ModelBase):
    """A GRU reading each input as a sequence of single features (MNIST-1D: 40 steps)."""

    name: Literal["gru"] = "gru"
    hidden_size: int = Field(32, ge=1)


class TransformerSpec(_ModelBase):
    """A small pre-norm transformer encoder over patches of the input (tokens), mean-pooled."""

    name: Literal["transformer"] = "transformer"
    patch_size: int = Field(4, ge=1, description="features per token; must divide in_features")
    d_model: int = Field(32, ge=1)
    heads: int = Field(2, ge=1)
    layers: int = Field(2, ge=1)
    ff: int = Field(64, ge=1, description="width of each block's feed-forward layer")
    activation: Activation = "relu"

    @model_validator(mode="after")
    def _heads(self) -> TransformerSpec:
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by heads {self.heads}")
        return self


ModelSpec = Annotated[
    LinearModelSpec | MLPSpec | CNN1DSpec | ResMLPSpec | GRUSpec | TransformerSpec,
    Field(discriminator="name"),
]


# --- training ---------------------------------------------------------------------------------

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class TrainSpec(BaseModel):
    """Optimizer, schedule, batch size, epochs and device."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.05, gt=0.0, le=10.0)
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="sgd only")
    nesterov: bool = Field(False, description="sgd only; needs momentum > 0")
    betas: tuple[float, float] = Field((0.9, 0.999), description="adam / adamw")
    batch_size: int = Field(100, ge=1, le=1_000_000)
    epochs: int = Field(20, ge=1, le=100_000)
    schedule: Literal["constant", "step", "cosine"] = "constant"
    step_size: int = Field(30, ge=1, description="step schedule: epochs between decays")
    gamma: float = Field(0.1, gt=0.0, le=1.0, description="step schedule: decay factor")
    device: str = Field("auto", description="auto (CUDA when present, else CPU), cpu, cuda, cuda:N")
    threads: int | None = Field(
        None, ge=1, le=256, description="CPU threads; default 1 for small models, else all cores"
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
        return self


class EnsembleSpec(BaseModel):
    """Ensembles of independently trained members (k = 1 means a single model)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    members: int = Field(1, ge=1, le=1)
    bagging: bool = False
    combine: Literal["mean_prob", "mean_logit", "median", "vote"] = "mean_prob"


# --- regularizers -----------------------------------------------------------------------------

RegularizerUnion = (
    r.L2Spec
    | r.WeightDecaySpec
    | r.L1Spec
    | r.ElasticNetSpec
    | r.MaxNormSpec
    | r.EntropySpec
    | r.ActivationL1Spec
    | r.FloodingSpec
    | r.InputNoiseSpec
    | r.WeightNoiseSpec
    | r.LabelSmoothingSpec
    | r.DisturbLabelSpec
    | r.DropoutSpec
    | r.GaussianDropoutSpec
    | r.DropConnectSpec
    | r.AugmentSpec
    | r.CutoutSpec
    | r.MixupSpec
    | r.AdversarialSpec
    | r.EarlyStoppingSpec
    | r.L0Spec
    | r.SpectralSpec
    | r.TieSpec
    | r.JacobianSpec
    | r.TangentPropSpec
    | r.GradNormSpec
    | r.HiddenNoiseSpec
    | r.VariationalDropoutSpec
    | r.DropBlockSpec
    | r.StochasticDepthSpec
    | r.RReLUSpec
    | r.StandoutSpec
    | r.AttentionDropoutSpec
    | r.EmbeddingDropoutSpec
    | r.CutMixSpec
    | r.SWASpec
    | r.EMASpec
    | r.SAMSpec
)
RegularizerSpec = Annotated[RegularizerUnion, Field(discriminator="name")]


def regularizer_spec_classes() -> list[type[r.RegularizerSpec]]:
    """Every regularizer's parameter model, in catalog order."""
    return list(RegularizerUnion.__args__)  # type: ignore[attr-defined]


def regularizer_names() -> list[str]:
    return [cls.model_fields["name"].default for cls in regularizer_spec_classes()]


# --- the experiment ---------------------------------------------------------------------------

#: regularizers that only make sense on some models (the rest apply to any).
MODELS_FOR: dict[str, tuple[str, ...]] = {
    "variational_dropout": ("gru",),
    "dropblock": ("cnn1d",),
    "stochastic_depth": ("resmlp", "cnn1d"),
    "rrelu": ("mlp", "cnn1d", "resmlp", "transformer"),
    "standout": ("mlp", "cnn1d", "resmlp", "transformer", "gru"),
    "attention_dropout": ("transformer",),
    "embedding_dropout": ("transformer",),
}

MeasureName = Literal[
    "lipschitz_bound",
    "grad_norm",
    "batch_grad_variance",
    "sharpness",
    "activation_sparsity",
    "confidence",
    "effective_l2",
]


class ExperimentSpec(BaseModel):
    """A whole experiment: data, model, training and regularizers. Only data and model are required."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("experiment", min_length=1, max_length=200)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    data: DataSpec
    model: ModelSpec
    train: TrainSpec = Field(default_factory=TrainSpec)
    regularizers: list[RegularizerSpec] = Field(default_factory=list, max_length=32)
    ensemble: EnsembleSpec = Field(default_factory=EnsembleSpec)
    measure: list[MeasureName] = Field(
        default_factory=list,
        description="extra per-epoch measurements (each one's cost is in timings.measure_s)",
    )

    @model_validator(mode="after")
    def _compatible(self) -> ExperimentSpec:
        regression = self.data.name == "toy1d"
        classification_only = {"label_smoothing", "disturb_label", "entropy", "mixup", "cutmix"}
        for i, reg in enumerate(self.regularizers):
            if regression and reg.name in classification_only:
                raise ValueError(
                    f"regularizers[{i}]: {reg.name} needs a classification dataset, "
                    f"and {self.data.name} is regression"
                )
        for i, reg in enumerate(self.regularizers):
            needs = MODELS_FOR.get(reg.name)
            if needs is not None and self.model.name not in needs:
                raise ValueError(
                    f"regularizers[{i}]: {reg.name} applies to the {' or '.join(needs)} model"
                    f"{'s' if len(needs) > 1 else ''}, not {self.model.name}"
                )
            if reg.name == "stochastic_depth" and self.model.name == "cnn1d":
                if not self.model.residual or len(self.model.channels) < 2:  # type: ignore[union-attr]
                    raise ValueError(
                        f"regularizers[{i}]: stochastic_depth needs residual blocks: set "
                        "model.residual to true and give model.channels at least two entries"
                    )
        names = [reg.name for reg in self.regularizers]
        if names.count("early_stopping") > 1:
            raise ValueError("early_stopping may appear at most once")
        return self

    def spec_hash(self) -> str:
        """A stable hash of the canonical JSON form (defaults filled in)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


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
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    return out or "spec"


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
        out.append({"field": field, "message": message})
    return out


def parse_spec(data: Any) -> ExperimentSpec:
    """Validate a decoded JSON object; raises ``SpecError`` with field paths on failure."""
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as err:
        raise SpecError(describe_errors(err, data)) from None


class SpecError(ValueError):
    """A spec that failed validation; ``errors`` name each field path."""

    def __init__(self, errors: list[dict[str, str]]):
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
