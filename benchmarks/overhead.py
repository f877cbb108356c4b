"""What regcore's Trainer costs over a plain PyTorch loop doing the same work (``make bench``).

Both loops train the same model on the same data from the same seed, evaluate train/val/test
loss and accuracy after every epoch, and draw random numbers in the same order (init by
``seed_all`` after the data is built, the shuffle by ``torch.randperm`` on a seeded generator,
dropout by ``nn.Dropout`` after each hidden activation), so their final train losses must agree.
The plain loop writes L2 and dropout by hand. regcore runs with ``checkpoint_every=0`` (no
checkpoint files), so the figure is the loop's own overhead; it still writes metrics.jsonl and
computes its extra metrics (ECE, weight norms, sparsity) every epoch.

The ratio regcore/plain is the median over interleaved repetitions, one torch thread. Exits
non-zero when a ratio misses its target or the final train losses differ in the 5th decimal.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from regcore.data import Dataset, build_dataset
from regcore.spec import ExperimentSpec, parse_spec
from regcore.training.context import RunContext
from regcore.training.loop import Trainer
from regcore.training.rng import seed_all

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench-data"


@dataclass
class Case:
    label: str
    hidden: list[int]
    batch_size: int
    n_train: int
    epochs: int
    target: float  # largest acceptable regcore/plain wall-time ratio


CASES = [
    Case("tiny MLP 40-100-100-10, batch 100", [100, 100], 100, 3500, 10, 1.25),
    Case("wide MLP 40-1024-1024-10, batch 256", [1024, 1024], 256, 2048, 4, 1.10),
]
VARIANTS = {
    "none": [],
    "l2+dropout": [{"name": "l2", "strength": 1e-4}, {"name": "dropout", "p": 0.3}],
}


def make_spec(case: Case, regs: list[dict[str, Any]], seed: int = 0) -> ExperimentSpec:
    return parse_spec(
        {
            "name": "bench",
            "seed": seed,
            "data": {"name": "mnist1d", "n_train": case.n_train, "n_val": 500, "n_test": 1000},
            "model": {"name": "mlp", "hidden": case.hidden},
            "train": {
                "optimizer": "sgd",
                "lr": 0.05,
                "momentum": 0.9,
                "batch_size": case.batch_size,
                "epochs": case.epochs,
                "device": "cpu",
            },
            "regularizers": regs,
        }
    )


# --- the plain loop ---------------------------------------------------------------------------


def plain_run(spec: ExperimentSpec) -> float:
    """Train ``spec`` by hand; returns the final train loss (eval mode)."""
    data: Dataset = build_dataset(spec.data, spec.seed, CACHE)
    seed_all(spec.seed)
    shuffle = torch.Generator().manual_seed(spec.seed)
    l2 = next((r.strength for r in spec.regularizers if r.name == "l2"), 0.0)
    p = next((r.p for r in spec.regularizers if r.name == "dropout"), 0.0)

    layers: list[nn.Module] = []
    width = data.in_features
    for h in spec.model.hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        if p:
            layers.append(nn.Dropout(p))
        width = h
    model = nn.Sequential(*layers, nn.Linear(width, data.num_classes))
    weights = [m.weight for m in model if isinstance(m, nn.Linear)]
    tr = spec.train
    opt = torch.optim.SGD(model.parameters(), lr=tr.lr, momentum=tr.momentum)

    x, y = data.train.x, data.train.y
    n, bs = len(x), tr.batch_size
    history = []
    for _ in range(tr.epochs):
        model.train()
        order = torch.randperm(n, generator=shuffle)
        for start in range(0, n, bs):
            idx = order[start : start + bs]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            if l2:
                loss = loss + l2 * sum(w.pow(2).sum() for w in weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            epoch = {}
            for name in ("train", "val", "test"):
                split = getattr(data, name)
                out = model(split.x)
                epoch[f"{name}_loss"] = float(F.cross_entropy(out, split.y))
                epoch[f"{name}_acc"] = float((out.argmax(1) == split.y).float().mean())
            history.append(epoch)
    return history[-1]["train_loss"]


def regcore_run(spec: ExperimentSpec, workdir: Path) -> float:
    trainer = Trainer(
        RunContext.build(
            spec, workdir, device="cpu", cache_dir=CACHE, threads=1, checkpoint_every=0
        )
    )
    result = trainer.run()
    assert result.status == "succeeded", result.reason
    return result.metrics["train_loss"]


def timed(fn: Any, *args: Any) -> tuple[float, float]:
    t0 = time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - t0, value


def ms_per_step(case: Case) -> float:
    """Forward + backward + SGD step of the case's model alone, in ms."""
    torch.manual_seed(0)
    dims = [40, *case.hidden, 10]
    mods: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:], strict=True):
        mods += [nn.Linear(a, b), nn.ReLU()]
    model = nn.Sequential(*mods[:-1])
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(case.batch_size, 40), torch.randint(0, 10, (case.batch_size,))
    times = []
    for _ in range(30):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times[5:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="interleaved runs per loop (≥ 5)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    CACHE.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, repeats {args.repeats}")
    print("regcore: Trainer.run with checkpoint_every=0, metrics.jsonl written each epoch\n")

    rows = []
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            step_ms = ms_per_step(case)
            for variant, regs in VARIANTS.items():
                spec = make_spec(case, regs)
                plain_run(spec), regcore_run(spec, Path(tmp) / "warm")  # warm caches, data, JIT
                plain_t, core_t = [], []
                plain_loss = core_loss = float("nan")
                for i in range(args.repeats):
                    order = [
                        ("p", plain_run, (spec,)),
                        ("r", regcore_run, (spec, Path(tmp) / f"r{i}")),
                    ]
                    for key, fn, fargs in order if i % 2 == 0 else order[::-1]:
                        seconds, loss = timed(fn, *fargs)
                        if key == "p":
                            plain_t.append(seconds)
                            plain_loss = loss
                        else:
                            core_t.append(seconds)
                            core_loss = loss
                ratio = statistics.median(c / p for c, p in zip(core_t, plain_t, strict=True))
                match = round(plain_loss, 5) == round(core_loss, 5)
                ok = ratio <= case.target and match
                failed |= not ok
                rows.append(
                    (case.label, f"{step_ms:.2f}", variant, f"{statistics.median(plain_t):.3f}",
                     f"{statistics.median(core_t):.3f}", f"{ratio:.3f}", f"≤ {case.target:.2f}",
                     f"{plain_loss:.6f}", f"{core_loss:.6f}", "ok" if ok else "FAIL")
                )  # fmt: skip

    head = ("model", "ms/step", "regularizers", "plain s", "regcore s", "ratio", "target",
            "plain loss", "regcore loss", "")  # fmt: skip
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
    if failed:
        print("\nFAIL: a ratio missed its target or the final train losses differ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
