"""The Bayesian methods' calibration effect at several seeds: the posterior predictive's test
ECE beside the point estimate's in the same run and beside a separate MAP run (the same spec
with the method replaced by l2 at the prior's λ = 1/(2·N·σ²_prior)).

    .venv/bin/python scripts/bayes_calibration.py [--seeds 0 1 2] [--json out.json]

``EFFECT_RUNS`` are the small-data MNIST-1D runs the effect tests use (at seed 0).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SMALL_DATA = {"name": "mnist1d", "n_train": 300, "n_val": 100, "n_test": 500}
TINY_MLP = {"name": "mlp", "hidden": [64]}


def _train(optimizer: str, lr: float, epochs: int) -> dict[str, Any]:
    return {"optimizer": optimizer, "lr": lr, "batch_size": 50, "epochs": epochs, "device": "cpu"}


#: method → the spec sections of its effect run (few examples, far past memorisation)
EFFECT_RUNS: dict[str, dict[str, Any]] = {
    "sgld": {
        "data": SMALL_DATA,
        "model": TINY_MLP,
        "train": _train("sgd", 0.3, 120),
        "regularizers": [
            {"name": "sgld", "prior_var": 1.0, "burn_in": 60, "thin": 10, "samples": 40}
        ],
    },
    "bayes_by_backprop": {
        "data": SMALL_DATA,
        "model": TINY_MLP,
        "train": _train("adam", 0.01, 60),
        "regularizers": [
            {"name": "bayes_by_backprop", "prior_var": 1.0, "init_std": 0.05, "samples": 20}
        ],
    },
    "laplace": {
        "data": SMALL_DATA,
        "model": TINY_MLP,
        "train": _train("sgd", 0.2, 120),
        "regularizers": [{"name": "laplace", "prior_var": 1.0, "hessian": "full"}],
    },
}


def _map_twin(sections: dict[str, Any]) -> dict[str, Any]:
    """The same run with the Bayesian method replaced by l2 at its prior's strength."""
    from regcore.bayes.prior import l2_strength

    reg = sections["regularizers"][0]
    lam = l2_strength(reg["prior_var"], sections["data"]["n_train"])
    return {**sections, "regularizers": [{"name": "l2", "strength": lam}]}


def measure(seeds: list[int]) -> list[dict[str, Any]]:
    from regcore.experiment import run
    from regcore.spec import parse_spec

    rows = []
    cache = ROOT / ".cache" / "test-data"
    for name, sections in EFFECT_RUNS.items():
        for seed in seeds:
            with tempfile.TemporaryDirectory() as tmp:
                m = run(parse_spec({**sections, "seed": seed}), Path(tmp) / "b", cache_dir=cache,
                        threads=1, checkpoint_every=0).metrics  # fmt: skip
                twin = run(parse_spec({**_map_twin(sections), "seed": seed}), Path(tmp) / "m",
                           cache_dir=cache, threads=1, checkpoint_every=0).metrics  # fmt: skip
            rows.append(
                {
                    "method": name,
                    "seed": seed,
                    "point_ece": m["ece"],
                    "predictive_ece": m[f"{name}_ece"],
                    "map_run_ece": twin["ece"],
                    "point_acc": m["test_acc"],
                    "predictive_acc": m[f"{name}_test_acc"],
                    "map_run_acc": twin["test_acc"],
                    "point_loss": m["test_loss"],
                    "predictive_loss": m[f"{name}_test_loss"],
                    "map_run_loss": twin["test_loss"],
                }
            )
            r = rows[-1]
            print(
                f"{name:18s} seed {seed}: ECE point {r['point_ece']:.3f} predictive "
                f"{r['predictive_ece']:.3f} MAP run {r['map_run_ece']:.3f} | acc "
                f"{r['point_acc']:.3f} / {r['predictive_acc']:.3f} / {r['map_run_acc']:.3f} | "
                f"NLL {r['point_loss']:.3f} / {r['predictive_loss']:.3f} / {r['map_run_loss']:.3f}",
                flush=True,
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    rows = measure(args.seeds)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
