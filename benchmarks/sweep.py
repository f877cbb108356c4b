"""A sweep through the service, packed against unpacked: the 32-trial grid of issue 10 (l2
strength x dropout p x 2 seeds, MNIST-1D, the MLP 40-100-100-10, 20 epochs) on the embedded
default (``reglab serve``: SQLite, the filesystem broker, its one embedded worker), timed from
``POST /v1/sweeps`` to the sweep's end, once with packing (``REGLAB_PACK_SIZE`` unset: 16 on
CPU, so one pack per seed) and once with ``REGLAB_PACK_SIZE=1`` (every trial its own job).

``max_concurrent`` is the trial count, so both runs launch every trial at submit and differ only
in packing. The data cache is filled before either run, so neither pays for generating MNIST-1D.
Prints both times and the ratio (target >= 3x; with ``--repeat N`` the two alternate N times and
the fastest of each counts); exits non-zero when a trial did not succeed or a trial's metric
rows (keys x steps) differ between the two runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reglab.client import RegLabClient  # noqa: E402
from tests.integration.conftest import free_port, serve  # noqa: E402

TARGET = 3.0


def sweep_body(epochs: int, strengths: list[float], ps: list[float], seeds: int) -> dict:
    return {
        "name": "bench-sweep",
        "base": {
            "data": {"name": "mnist1d", "n_train": 2000, "n_val": 500, "n_test": 1000},
            "model": {"name": "mlp", "hidden": [100, 100]},
            "train": {
                "lr": 0.05,
                "momentum": 0.9,
                "batch_size": 100,
                "epochs": epochs,
                "device": "cpu",
            },
            "regularizers": [{"name": "l2", "strength": 1e-4}, {"name": "dropout", "p": 0.1}],
        },  # fmt: skip
        "space": {"regularizers[0].strength": strengths, "regularizers[1].p": ps},
        "seeds": seeds,
        "max_concurrent": len(strengths) * len(ps) * seeds,
        "metric": "val_acc",
    }


def fill_cache(cache: Path, body: dict) -> None:
    from regcore.data import build_dataset
    from regcore.spec import parse_spec

    spec = parse_spec(body["base"])
    for seed in range(body["seeds"]):
        build_dataset(spec.data, spec.seed + seed, cache)


def run(root: Path, cache: Path, body: dict, pack_size: str | None) -> tuple[float, dict]:
    """Seconds from submit to the sweep's end, and ``{trial index: {key: steps}}``."""
    root.mkdir(parents=True)
    env = {"REGLAB_CACHE_DIR": str(cache), "REGLAB_WORKER_THREADS": "1"}
    if pack_size is not None:
        env["REGLAB_PACK_SIZE"] = pack_size
    port = free_port()
    proc = serve(root, port, env=env, timeout=120)
    try:
        with RegLabClient(f"http://127.0.0.1:{port}", timeout=60) as api:
            t0 = time.perf_counter()
            sweep_id = api.create_sweep(body)["id"]
            while (s := api.sweep(sweep_id))["status"] == "running":
                time.sleep(0.2)
            seconds = time.perf_counter() - t0
            bad = [e for e in s["experiments"] if e["status"] != "succeeded"]
            if bad:
                raise SystemExit(f"not every trial succeeded: {bad}\n{proc.tail()}")
            shapes = {
                i: {k: len(v) for k, v in api.metrics(e["experiment_id"]).items()}
                for i, e in enumerate(s["experiments"])
            }
    finally:
        proc.stop()
    return seconds, shapes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.0, 1e-4, 1e-3, 1e-2])
    parser.add_argument("--ps", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument(
        "--repeat", type=int, default=1, help="alternate packed and unpacked this many times; "
        "the fastest of each counts (the shared box's load moves every figure)",
    )  # fmt: skip
    args = parser.parse_args()
    body = sweep_body(args.epochs, args.strengths, args.ps, args.seeds)
    n = body["max_concurrent"]
    print(f"{n} trials, {args.epochs} epochs, MNIST-1D MLP 40-100-100-10, embedded default")
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        fill_cache(cache, body)
        times: dict[str, list[float]] = {"packed": [], "unpacked": []}
        for r in range(args.repeat):
            t, packed = run(Path(tmp) / f"packed-{r}", cache, body, None)
            times["packed"].append(t)
            print(f"packed (REGLAB_PACK_SIZE unset): {t:8.1f} s")
            t, single = run(Path(tmp) / f"single-{r}", cache, body, "1")
            times["unpacked"].append(t)
            print(f"unpacked (REGLAB_PACK_SIZE=1):   {t:8.1f} s")
    t_pack, t_one = min(times["packed"]), min(times["unpacked"])
    ratio = t_one / t_pack
    met = "met" if ratio >= TARGET else "NOT met"
    print(f"speed-up {ratio:.2f}x (target >= {TARGET:.0f}x: {met})")
    if packed != single:
        diff = {i: (packed.get(i), single.get(i)) for i in single if packed.get(i) != single[i]}
        print(f"metric rows differ between packed and unpacked trials: {diff}", file=sys.stderr)
        return 1
    print(f"every trial's metric rows match: {len(next(iter(single.values())))} keys per trial")
    return 0


if __name__ == "__main__":
    sys.exit(main())
