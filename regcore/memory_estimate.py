"""How much memory a spec's run needs at its peak, estimated from the spec alone (no torch).

Admission (the API's submit and sweeps, ``reglab run``) refuses a spec whose estimate exceeds
what a worker holds, instead of letting the run die of memory on a worker (and, without
isolation, take the next job with it). The estimate is deliberately simple, in float32 bytes:

* **parameters**: weights x members x (weights, gradients, the optimizer's state (adam: 2, sgd
  with momentum: 1), the best-checkpoint copy, an averaged copy for swa/ema, a snapshot's kept
  members);
* **activations**: what one training step keeps for its backward pass (every layer's output,
  twice: before and after the nonlinearity, and its gradient) x the effective batch
  (``min(batch_size, n_train)``) x the members trained at once (a batched ensemble trains all
  of them in one step), or an evaluation chunk of 8192 examples, whichever is larger;
  regularizers with a second backward pass (jacobian, tangent_prop, sam, adversarial, grad_norm)
  double it;
* **data**: every split as float64 arrays and float32 tensors, and for MNIST-1D the generator's
  working signals and latents (``template_len + padding[1]`` floats per example), for the
  target data and a pretraining source alike;
* a fixed **base** for the interpreter, torch and numpy.

``tests/reliability/test_memory_estimate.py`` checks it against measured peak RSS.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from regcore.spec import (
    DATASET_FEATURES,
    DATASET_OUTPUTS,
    DATASET_SIZES,
    GENERATED_DEFAULTS,
    MAX_EXAMPLES,
    CNN1DSpec,
    DataSpec,
    ExperimentSpec,
    GRUSpec,
    MLPSpec,
    ResMLPSpec,
    TransformerSpec,
    unlabeled_batch_size,
)

FLOAT = 4  # bytes of a float32
BASE_BYTES = 450 * 2**20  # python + torch + numpy + scipy + sklearn, measured ~420 MB RSS
EVAL_CHUNK = 8192  # regcore.training.metrics.predict
#: the mnist1d package's default signal length before subsampling: template_len 12 + padding 60
MNIST1D_LENGTH = 72
SECOND_BACKWARD = ("jacobian", "tangent_prop", "sam", "entropy_sgd", "adversarial", "grad_norm")
#: what a worker may use when REGLAB_WORKER_MEMORY_BYTES is not set: this share of the machine's
#: (or the container's) memory; the rest is the worker's own process, the OS and page cache
DEFAULT_SHARE = 0.8
ENV = "REGLAB_WORKER_MEMORY_BYTES"
#: a dataset whose shape the spec does not fix (an upload): assumed this wide
FALLBACK_FEATURES, FALLBACK_OUTPUTS = 1024, 100


@dataclass
class Part:
    bytes: int
    fields: list[str]
    why: str


@dataclass
class Estimate:
    parts: dict[str, Part] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return BASE_BYTES + sum(p.bytes for p in self.parts.values())


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _model_fields(model: Any) -> list[str]:
    if isinstance(model, MLPSpec):
        return ["model.hidden"]
    if isinstance(model, CNN1DSpec):
        return ["model.channels", "model.hidden"]
    if isinstance(model, ResMLPSpec):
        return ["model.width", "model.blocks"]
    if isinstance(model, GRUSpec):
        return ["model.hidden_size"]
    if isinstance(model, TransformerSpec):
        return ["model.d_model", "model.layers", "model.ff"]
    return ["model"]


def shapes(model: Any, features: int, outputs: int) -> tuple[int, int]:
    """(parameters with biases, activation floats one example keeps for the backward pass)."""

    def chain(widths: list[int]) -> int:
        return sum(a * b + b for a, b in zip(widths, widths[1:], strict=False))

    if isinstance(model, MLPSpec):
        widths = [features, *model.hidden, outputs]
        return chain(widths), 2 * sum(widths)
    if isinstance(model, CNN1DSpec):
        pairs = zip([1, *model.channels], model.channels, strict=False)
        convs = sum(a * b * model.kernel_size + b for a, b in pairs)
        head = [model.channels[-1] * features, *model.hidden, outputs]
        return convs + chain(head), 2 * (features * sum(model.channels) + sum(head))
    if isinstance(model, ResMLPSpec):
        w = model.width
        params = chain([features, w]) + model.blocks * 2 * (w * w + w) + chain([w, outputs])
        return params, 2 * (features + w * (1 + 2 * model.blocks) + outputs)
    if isinstance(model, GRUSpec):
        h = model.hidden_size
        return 3 * (h + h * h + 2 * h) + h * outputs + outputs, 8 * features * h + outputs
    if isinstance(model, TransformerSpec):
        d, tokens = model.d_model, max(1, features // model.patch_size)
        block = 4 * (d * d + d) + 2 * d * model.ff + model.ff + d + 4 * d
        params = chain([model.patch_size, d]) + model.layers * block + chain([d, outputs])
        per_layer = tokens * (10 * d + 2 * model.ff) + 2 * model.heads * tokens * tokens
        return params, model.layers * per_layer + 2 * tokens * d + outputs
    return features * outputs + outputs, 2 * (features + outputs)


def _sizes(data: DataSpec) -> tuple[int, int, int]:
    """regcore.data.split_sizes without importing the data code (numpy, torch)."""
    n_train, n_val, n_test = (getattr(data, k, None) for k in ("n_train", "n_val", "n_test"))
    total = DATASET_SIZES.get(data.name)
    if total is None:
        d_train, d_val, d_test = GENERATED_DEFAULTS.get(data.name, (MAX_EXAMPLES, 0, 0))
        return n_train or d_train, n_val or d_val, n_test or d_test
    n_test = n_test or round(0.2 * total)
    n_val = n_val or round(0.2 * (total - n_test))
    return n_train or max(1, total - n_test - n_val), n_val, n_test


def _data(data: DataSpec, generator: Mapping[str, Any], prefix: str) -> Part:
    n = sum(_sizes(data)) + (getattr(data, "n_unlabeled", None) or 0)
    features = DATASET_FEATURES.get(data.name, FALLBACK_FEATURES)
    per_example = features * (8 * 3 + FLOAT * 2)  # raw, standardized, split copies; tensors
    fields = [f"{prefix}.n_train", f"{prefix}.n_test"]
    why = f"{n:,} examples x {features} features"
    if data.name == "mnist1d":
        padding = generator.get("padding", [36, 60])
        length = int(generator.get("template_len", 12)) + int(padding[-1])
        per_example += 8 * 3 * length  # working signal, and the latents' two noise draws
        why += f"; the generator's {length}-sample signals"
        if generator:
            fields += [f"{'pretrain.' if prefix == 'pretrain.source' else ''}generator.padding"]
    return Part(n * per_example, fields, why)


def estimate(spec: ExperimentSpec) -> Estimate:
    features = DATASET_FEATURES.get(spec.data.name, FALLBACK_FEATURES)
    outputs = DATASET_OUTPUTS.get(spec.data.name, FALLBACK_OUTPUTS)
    params, acts = shapes(spec.model, features, outputs)
    names = {r.name for r in spec.regularizers}
    ens = spec.ensemble
    members = ens.members
    opt_state = {"adam": 2, "adamw": 2}.get(spec.train.optimizer, 1 if spec.train.momentum else 0)
    copies = 3 + opt_state + (1 if names & {"swa", "ema"} else 0)
    copies += 3 + opt_state if "soft_sharing" in names else 0  # the peer and its optimizer
    copies += 1 if "consistency" in names else 0  # mean teacher's average
    if ens.snapshot is not None:
        copies += ens.snapshot.cycles
    model_fields = _model_fields(spec.model)
    est = Estimate()
    param_fields = list(model_fields)
    if members > 1:
        param_fields.append("ensemble.members")
    if ens.snapshot is not None:
        param_fields.append("ensemble.snapshot.cycles")
    if opt_state:
        param_fields.append("train.optimizer")
    est.parts["parameters"] = Part(
        FLOAT * params * members * copies,
        param_fields,
        f"{params:,} parameters x {members} member(s) x {copies} copies (weights, gradients, "
        f"{opt_state} optimizer state(s), best checkpoint, averages)",
    )
    n_train, n_val, n_test = _sizes(spec.data)
    together = 1 if ens.batched == "off" else members
    batch = min(spec.train.batch_size, n_train)
    # extra passes: pseudo_label's over the unlabelled batch, consistency's two over the labelled
    # and the unlabelled one, soft_sharing's peer over the labelled batch
    n_u = spec.data.n_unlabeled or 0
    unlabeled = unlabeled_batch_size(spec.train.batch_size, n_train, n_u) if n_u else 0
    rows = batch + (unlabeled if "pseudo_label" in names else 0)
    rows += 2 * (batch + unlabeled) if "consistency" in names else 0
    rows += batch if "soft_sharing" in names else 0
    train_acts = 2 * acts * rows * together * (2 if names & set(SECOND_BACKWARD) else 1)
    eval_acts = acts * min(EVAL_CHUNK, max(n_train, n_val, n_test)) * together
    act_fields = ["train.batch_size", *model_fields] if train_acts >= eval_acts else model_fields
    if together > 1:
        act_fields.append("ensemble.members")
    est.parts["activations"] = Part(
        FLOAT * max(train_acts, eval_acts),
        act_fields,
        f"{acts:,} floats per example x batch {batch:,} x {together} member(s) at once",
    )
    data = _data(spec.data, {}, "data")
    if spec.pretrain is not None:
        source = _data(spec.pretrain.source, spec.pretrain.generator, "pretrain.source")
        data = Part(data.bytes + source.bytes, data.fields + source.fields,
                    f"{data.why}; source {source.why}")  # fmt: skip
    est.parts["data"] = data
    return est


# --- the limit --------------------------------------------------------------------------------


def _cgroup_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            return int(text)
    return None


def machine_memory() -> int | None:
    """The machine's physical memory, or the container's limit when lower."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        total = None
    cgroup = _cgroup_limit()
    if total is None or (cgroup is not None and cgroup < total):
        return cgroup
    return total


def worker_memory_limit(environ: Mapping[str, str]) -> int:
    """``REGLAB_WORKER_MEMORY_BYTES`` in ``environ`` (the caller's: regcore reads no environment
    of its own), else ``DEFAULT_SHARE`` of this machine's memory (8 GB
    when it cannot be read)."""
    value = environ.get(ENV, "").strip().replace("_", "")
    if value:
        try:
            return int(float(value))
        except ValueError:
            raise ValueError(f"{ENV}={value!r} is not a number of bytes") from None
    total = machine_memory()
    return int(total * DEFAULT_SHARE) if total else 8 * 10**9


def check(spec: ExperimentSpec, limit: int) -> list[dict[str, str]]:
    """Errors (``{"field", "message"}``) when the estimate exceeds ``limit``; else ``[]``.
    Each field that drives a part of at least a quarter of the estimate is named once."""
    est = estimate(spec)
    total = est.total
    if total <= limit:
        return []
    head = (
        f"the run needs about {human(total)} of memory at its peak and a worker holds "
        f"{human(limit)} ({ENV})"
    )
    errors: list[dict[str, str]] = []
    seen: set[str] = set()
    ranked = sorted(est.parts.items(), key=lambda kv: -kv[1].bytes)
    for name, part in ranked:
        if part.bytes < total / 4 and errors:
            break
        fresh = [f for f in part.fields if f not in seen]
        seen.update(fresh)
        for i, f in enumerate(fresh):
            message = (
                f"{head}; {name} {human(part.bytes)}: {part.why}"
                if i == 0
                else f"drives the {name} ({human(part.bytes)}) with {fresh[0]}"
            )
            errors.append({"field": f, "message": message})
    return errors
