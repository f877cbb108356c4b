"""How fast the dashboard's pages are in headless Chromium (``/usr/bin/chromium`` through the
playwright package), against a real ``reglab serve --no-worker`` on a fresh SQLite file:

* ``runs``: 1,000 succeeded experiments in the database; the Runs page from navigation to its
  table drawn (its first page of 50, and a 500-row page: the API's largest);
* ``run``: one experiment with 20 metric keys x 500 epochs; the Run page from navigation to every
  chart drawn, and the charts' drawing alone (``window.__reglab.lastRender``).

Each figure is the median of ``--repeat`` fresh page loads (one warm-up first). Targets: runs
under 1 s, run page under 0.5 s; exits non-zero when a median misses its target.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from service.db.migrate import upgrade_to_head  # noqa: E402
from service.db.models import Experiment, Metric, utcnow  # noqa: E402
from service.db.session import make_engine  # noqa: E402
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, start_server, tiny  # noqa: E402

KEYS = ["train_loss", "val_loss", "test_loss", "train_acc", "val_acc", "test_acc", "gen_gap",
        "ece", "confidence", "weight_l1", "weight_l2", "sparsity", "lr", "penalty",
        "train_batch_loss", "sys_cpu_percent", "sys_rss_mb", "sys_epoch_s", "grad_norm",
        "update_ratio"]  # fmt: skip


def seed(url: str, runs: int, epochs: int) -> str:
    upgrade_to_head(url)
    engine = make_engine(url)
    rng = random.Random(0)
    now = utcnow()
    rows = []
    for i in range(runs):
        acc = rng.uniform(0.5, 0.95)
        rows.append(
            {
                "id": f"{i:032x}", "owner": "", "name": f"bench-{i}", "status": "succeeded",
                "queue": "cpu", "spec": tiny(f"bench-{i}"), "spec_hash": f"{i:064x}",
                "created_at": now - timedelta(seconds=runs - i), "started_at": now,
                "finished_at": now, "attempts": 1, "max_attempts": 3, "last_epoch": epochs,
                "total_epochs": epochs, "tags": {"bench": "ui"},
                "summary": {"status": "succeeded", "epochs_run": epochs, "metrics": {
                    "test_acc": acc, "gen_gap": rng.uniform(0, 0.3), "ece": rng.uniform(0, 0.1),
                    "val_loss": 1 - acc}},
            }
        )  # fmt: skip
    long_id = rows[-1]["id"]
    points = [
        {"experiment_id": long_id, "key": k, "step": s, "value": rng.random()}
        for k in KEYS
        for s in range(1, epochs + 1)
    ]
    with Session(engine) as session:
        session.execute(insert(Experiment), rows)
        session.execute(insert(Metric), points)
        session.commit()
    engine.dispose()
    return long_id


def measure(browser, url: str, ready: str, repeat: int) -> list[dict]:
    out = []
    for i in range(repeat + 1):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        t0 = time.perf_counter()
        page.goto(url)
        page.wait_for_selector(ready, timeout=60_000)
        while not page.evaluate("window.__reglab && window.__reglab.rendered"):
            page.wait_for_timeout(5)
        wall = (time.perf_counter() - t0) * 1000
        figures = page.evaluate(
            "({rendered: window.__reglab.rendered, lastRender: window.__reglab.lastRender})"
        )
        if i:  # the first load warms the server and the browser's compile cache
            out.append({"wall_ms": wall, "rendered_ms": figures["rendered"]["at"],
                        "draw_ms": (figures.get("lastRender") or {}).get("ms")})  # fmt: skip
        context.close()
    return out


def median(samples: list[dict], key: str) -> float | None:
    values = [s[key] for s in samples if s[key] is not None]
    return round(statistics.median(values), 1) if values else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        long_id = seed(f"sqlite:///{cwd}/var/reglab.db", args.runs, args.epochs)
        server = start_server(cwd, "--no-worker")
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                ready = "#view[data-ready=true]"
                runs50 = measure(browser, f"{server.url}/ui/#/runs", ready, args.repeat)
                runs500 = measure(browser, f"{server.url}/ui/#/runs?limit=500", ready, args.repeat)
                run = measure(browser, f"{server.url}/ui/#/runs/{long_id}", ready, args.repeat)
                browser.close()
        finally:
            server.http.close()
            server.proc.stop()

    def both(samples: list[dict]) -> dict:
        return {key: median(samples, key) for key in ("wall_ms", "rendered_ms")}

    report = {
        "runs_in_db": args.runs,
        "runs_page_50_rows": both(runs50),
        "runs_page_500_rows": both(runs500),
        "run_page": {
            "keys": len(KEYS),
            "epochs": args.epochs,
            **both(run),
            "charts_draw_ms": median(run, "draw_ms"),
        },
    }
    print(json.dumps(report, indent=2))
    runs_ms, run_ms = report["runs_page_50_rows"]["rendered_ms"], report["run_page"]["rendered_ms"]
    ok = runs_ms is not None and runs_ms < 1000 and run_ms is not None and run_ms < 500
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
