"""Search by what was run: ``GET /v1/experiments`` filtered by a parameter and a metric over
``--runs`` experiments (default 10,000), through the API in process (TestClient: routing, auth,
parsing, SQL, views, response validation; no network).

The database is seeded as the API would leave it: each run's spec flattened into
``experiment_params`` (``service.db.params``) and its latest metrics in ``metric_latest``. Specs
vary the model (mlp / cnn1d), the l2 strength (log-uniform 1e-5..1e-1), dropout p and the lr;
test_acc is uniform in 0.5..1.0 (seed 0). Each query is answered ``--repeat`` times (after one
warm-up) and its first page is checked against the seeded values. Each API request is followed
by the same query through ``service.db.experiments.list_page`` alone (the SQL and the ORM rows,
no HTTP, auth, views or response validation), so the report says, in the same run, how much of
the API's time is the database's.

Prints p50 and p95 per query and exits non-zero unless the p95 of every query is under
``--target-ms`` (50) on PostgreSQL (``REGLAB_BENCH_POSTGRES_URL``; skipped, and said so, when it
is not reachable). ``--backend sqlite`` or ``both`` measures the embedded default too (reported,
not judged).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import insert, text  # noqa: E402

from benchmarks.ingest import postgres_database  # noqa: E402
from service.api.query import filter_and_sort  # noqa: E402
from service.db import experiments as repo  # noqa: E402
from service.db import params, search  # noqa: E402
from service.db.migrate import upgrade_to_head  # noqa: E402
from service.db.models import Experiment, ExperimentParam, MetricLatest  # noqa: E402
from service.db.session import make_engine, make_sessionmaker  # noqa: E402
from service.main import create_app  # noqa: E402
from service.settings import Settings  # noqa: E402

QUERIES = {
    "param+metric": {"filter": "params.regularizers.l2.strength>=1e-3 and test_acc>0.9"},
    "param+metric sorted": {
        "filter": "params.regularizers.l2.strength>=1e-3 and test_acc>0.9",
        "sort": "-test_acc",
    },
    "text param+metric": {"filter": "params.model.name=cnn1d and test_acc>0.95"},
    "or + in": {
        "filter": "(params.model.name=cnn1d or params.regularizers=dropout) "
        "and params.train.lr in (0.01, 0.1) and test_acc>0.9"
    },
}


def _spec(rng: random.Random, i: int) -> dict[str, Any]:
    regs: list[dict[str, Any]] = [{"name": "l2", "strength": 10 ** rng.uniform(-5, -1)}]
    if rng.random() < 0.5:
        regs.append({"name": "dropout", "p": round(rng.uniform(0.1, 0.6), 3)})
    model = (
        {"name": "mlp", "hidden": [64, 64]}
        if rng.random() < 0.7
        else {"name": "cnn1d", "channels": [8, 16]}
    )
    return {
        "name": f"bench-{i}",
        "seed": i,
        "data": {"name": "mnist1d", "n_train": 4000},
        "model": model,
        "train": {"optimizer": "sgd", "lr": rng.choice([0.001, 0.01, 0.1]), "epochs": 20},
        "regularizers": regs,
    }


def seed(url: str, runs: int) -> dict[str, tuple[dict[str, Any], float]]:
    """``runs`` experiments with params and test_acc; returns id -> (spec, test_acc)."""
    rng = random.Random(0)
    engine = make_engine(url)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    truth: dict[str, tuple[dict[str, Any], float]] = {}
    exps, prows, mrows = [], [], []
    for i in range(runs):
        eid = uuid.UUID(int=rng.getrandbits(128)).hex
        spec = _spec(rng, i)
        acc = rng.uniform(0.5, 1.0)
        truth[eid] = (spec, acc)
        exps.append(
            dict(id=eid, owner="", name=spec["name"], status="succeeded", queue="cpu", spec=spec,
                 spec_hash=eid * 2, created_at=start + timedelta(seconds=i), attempts=1,
                 max_attempts=3, cancel_requested=False, last_epoch=20, total_epochs=20,
                 summary={"status": "succeeded", "metrics": {"test_acc": acc}})
        )  # fmt: skip
        prows += params.rows(eid, spec)
        mrows += [
            dict(experiment_id=eid, key="test_acc", step=20, value=acc),
            dict(experiment_id=eid, key="val_loss", step=20, value=rng.uniform(0.1, 2)),
        ]
    with make_sessionmaker(engine).begin() as s:
        for table, rows in ((Experiment, exps), (ExperimentParam, prows), (MetricLatest, mrows)):
            for k in range(0, len(rows), 5000):
                s.execute(insert(table), rows[k : k + 5000])
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()
    engine.dispose()
    print(f"  seeded {runs} runs, {len(prows)} param rows, {len(mrows)} metric rows")
    return truth


def _matches(name: str, spec: dict[str, Any], acc: float) -> bool:
    l2 = next(r["strength"] for r in spec["regularizers"] if r["name"] == "l2")
    regs = {r["name"] for r in spec["regularizers"]}
    model = spec["model"]["name"]
    if name.startswith("param+metric"):
        return l2 >= 1e-3 and acc > 0.9
    if name == "text param+metric":
        return model == "cnn1d" and acc > 0.95
    return (
        (model == "cnn1d" or "dropout" in regs) and spec["train"]["lr"] in (0.01, 0.1) and acc > 0.9
    )


def measure(url: str, work: Path, truth: dict, repeat: int) -> dict[str, tuple[float, float]]:
    settings = Settings(
        database_url=url, broker_dir=work / "broker", artifacts=str(work / "store"), auth="off"
    )
    out = {}
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        for name, query in QUERIES.items():
            expected = {e for e, (spec, acc) in truth.items() if _matches(name, spec, acc)}
            first = client.get("/v1/experiments", params=query)
            assert first.status_code == 200, first.text
            page = first.json()["items"]
            assert page and {i["id"] for i in page} <= expected, name
            assert len(page) == min(50, len(expected)), (name, len(page), len(expected))
            node, order = filter_and_sort(query.get("filter"), query.get("sort"))
            times: list[float] = []
            sql: list[float] = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                r = client.get("/v1/experiments", params=query)
                times.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200
                with sessions() as session:
                    t0 = time.perf_counter()
                    repo.list_page(session, owner="", where=search.where(node, order), sort=order,
                                   lean=True)  # fmt: skip
                    sql.append((time.perf_counter() - t0) * 1000)
            p50, p95 = _percentiles(times)
            out[name] = (p50, p95)
            s50, s95 = _percentiles(sql)
            print(f"  {name:22s} {len(expected):5d} matches  API p50 {p50:6.1f} ms  p95 {p95:6.1f}"
                  f" ms | list_page alone p50 {s50:6.1f} ms  p95 {s95:6.1f} ms")  # fmt: skip
    engine.dispose()
    return out


def _percentiles(times: list[float]) -> tuple[float, float]:
    return statistics.median(times), statistics.quantiles(times, n=20)[18]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--target-ms", type=float, default=50.0)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="postgresql")
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory(prefix="reglab-search-") as tmp:
        work = Path(tmp)
        if args.backend in ("sqlite", "both"):
            url = f"sqlite:///{work / 'search.db'}"
            upgrade_to_head(url)
            print(f"SQLite, {args.runs} runs (reported, not judged):")
            measure(url, work, seed(url, args.runs), args.repeat)
        if args.backend in ("postgresql", "both"):
            made = postgres_database()
            if made is not None:
                url, drop = made
                try:
                    upgrade_to_head(url)
                    print(f"PostgreSQL, {args.runs} runs (target: p95 < {args.target_ms} ms):")
                    results = measure(url, work, seed(url, args.runs), args.repeat)
                    ok = all(p95 < args.target_ms for _, p95 in results.values())
                finally:
                    drop()
    print("ok" if ok else f"FAILED: a query's p95 is {args.target_ms} ms or more")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
