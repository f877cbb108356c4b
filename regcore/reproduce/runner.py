"""Run a claim's arms over seeds through an executor, and decide its verdict.

An executor takes a spec (a dict) and returns the run's final metrics. ``local_executor`` runs
it through ``regcore.experiment.run`` in a scratch directory; the CLI passes one that submits
to the service instead (``reglab reproduce --api-url``).
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from regcore.reproduce.claims import CLAIMS, Claim, Spec
from regcore.reproduce.verdict import Verdict, decide, per_seed_values

Executor = Callable[[Spec], Mapping[str, float]]


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` onto ``base``: mappings merge key by key, anything else (lists too) replaces."""
    out = dict(base)
    for k, v in over.items():
        out[k] = (
            merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
        )
    return out


def arm_spec(claim: Claim, arm: str, seed: int, quick: bool) -> Spec:
    spec = merge(claim.base, claim.arms[arm])
    if quick:
        train = dict(spec["train"])
        train["epochs"] = max(1, round(train["epochs"] * claim.quick_epochs))
        spec["train"] = train
    return {"name": f"reproduce-{claim.id}-{arm}", "seed": seed, **spec}


def local_executor(cache_dir: Path | None = None, threads: int = 1) -> Executor:
    def execute(spec: Spec) -> Mapping[str, float]:
        from regcore import experiment
        from regcore.spec import parse_spec

        with tempfile.TemporaryDirectory(prefix="reglab-reproduce-") as work:
            result = experiment.run(
                parse_spec(spec), Path(work), cache_dir=cache_dir, threads=threads,
                checkpoint_every=0,
            )  # fmt: skip
        if result.status != "succeeded":
            raise RuntimeError(
                f"{spec['name']} seed {spec['seed']}: {result.status}: {result.reason}"
            )
        return result.metrics

    return execute


@dataclass
class ClaimResult:
    claim: Claim
    seeds: list[int]
    runs: dict[str, list[Mapping[str, float]]]  # arm -> final metrics per seed
    specs: dict[str, list[Spec]]
    verdict: Verdict
    seconds: float
    errors: list[str] = field(default_factory=list)


def run_claim(
    claim: Claim,
    execute: Executor,
    seeds: Sequence[int],
    quick: bool = False,
    on_run: Callable[[str], None] | None = None,
) -> ClaimResult:
    t0 = time.perf_counter()
    runs: dict[str, list[Mapping[str, float]]] = {arm: [] for arm in claim.arms}
    specs: dict[str, list[Spec]] = {arm: [] for arm in claim.arms}
    errors: list[str] = []
    for seed in seeds:
        for arm in claim.arms:
            spec = arm_spec(claim, arm, seed, quick)
            try:
                metrics: Mapping[str, float] = execute(spec)
            except Exception as exc:  # a failed run is a missing value, reported, never hidden
                errors.append(f"{arm} seed {seed}: {exc}")
                metrics = {}
            runs[arm].append(metrics)
            specs[arm].append(spec)
            if on_run is not None:
                on_run(f"{claim.id} {arm} seed {seed}")
    values = []
    for i in range(len(seeds)):
        one = {arm: [runs[arm][i]] for arm in runs}
        try:
            values += per_seed_values(claim.statistic, one, {a: [specs[a][i]] for a in specs})
        except KeyError as exc:
            errors.append(f"seed {seeds[i]}: {exc}")
            values.append(math.nan)
    verdict = decide(claim.statistic, values)
    return ClaimResult(claim, list(seeds), runs, specs, verdict, time.perf_counter() - t0, errors)


def run_suite(
    execute: Executor,
    seeds: Sequence[int],
    quick: bool = False,
    only: Sequence[str] | None = None,
    on_run: Callable[[str], None] | None = None,
) -> list[ClaimResult]:
    chosen = [c for c in CLAIMS if not only or c.id in only]
    unknown = sorted(set(only or ()) - {c.id for c in CLAIMS})
    if unknown:
        raise ValueError(f"unknown claim(s) {unknown}; known: {[c.id for c in CLAIMS]}")
    return [run_claim(c, execute, seeds, quick, on_run) for c in chosen]
