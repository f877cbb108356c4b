"""Batched ensemble training (one vmapped model) against one member after another (``make bench``).

For k = 8 and 32 MNIST-1D MLP members (different seeds, bagging, L2), trains the ensemble both
ways from the same spec and reports wall time, the speed-up, and the largest difference between
a member's final train/test loss in the two runs. Exits non-zero when a member's loss differs by
more than 1e-4. Both paths evaluate every member and the ensemble after each epoch and write no
checkpoints.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from regcore.ensemble.batched import BatchedEnsembleRun
from regcore.ensemble.runner import EnsembleRun
from regcore.spec import parse_spec

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench-data"
TOLERANCE = 1e-4


def spec_for(k: int, epochs: int, device: str) -> object:
    return parse_spec(
        {
            "name": f"bench-ensemble-{k}",
            "data": {"name": "mnist1d", "n_train": 2000, "n_val": 500, "n_test": 1000},
            "model": {"name": "mlp", "hidden": [100, 100]},
            "train": {
                "optimizer": "sgd",
                "lr": 0.05,
                "momentum": 0.9,
                "batch_size": 100,
                "epochs": epochs,
                "device": device,
            },
            "regularizers": [{"name": "l2", "strength": 1e-4}],
            "ensemble": {"members": k, "bagging": True},
        }
    )


def timed(cls: type, spec: object, workdir: Path, device: str) -> tuple[float, dict[str, float]]:
    runner = cls(spec, workdir, device=device, cache_dir=CACHE, threads=1, checkpoint_every=0)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    result = runner.run()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0, result.metrics


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ok = True
    print(f"device {args.device}, {args.epochs} epochs, one torch thread")
    print(f"{'k':>4} {'one-by-one s':>13} {'batched s':>10} {'speed-up':>9} {'max |Δloss|':>12}")
    for k in args.members:
        spec = spec_for(k, args.epochs, args.device)
        with tempfile.TemporaryDirectory() as tmp:
            timed(BatchedEnsembleRun, spec_for(2, 1, args.device), Path(tmp) / "w", args.device)
            t_seq, seq = timed(EnsembleRun, spec, Path(tmp) / "seq", args.device)
            t_bat, bat = timed(BatchedEnsembleRun, spec, Path(tmp) / "bat", args.device)
        diff = max(
            abs(seq[f"member{i}_{key}"] - bat[f"member{i}_{key}"])
            for i in range(k)
            for key in ("train_loss", "test_loss")
        )
        ok &= diff <= TOLERANCE
        print(f"{k:>4} {t_seq:>13.2f} {t_bat:>10.2f} {t_seq / t_bat:>8.1f}x {diff:>12.2e}")
    if not ok:
        print(f"a member's final loss differs by more than {TOLERANCE}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
