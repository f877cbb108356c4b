"""How fast the dashboard's pages are in headless Chromium (``/usr/bin/chromium`` through the
playwright package), against a real ``reglab serve --no-worker`` on a fresh SQLite file:

* ``runs``: 1,000 succeeded experiments in the database; the Runs page from navigation to its
  table drawn (its first page of 50, and a 500-row page: the API's largest);
* ``run``: one experiment with 20 metric keys x 500 epochs; the Run page from navigation to every
  chart drawn, and the charts' drawing alone (``window.__reglab.lastRender``);
* ``run_long``: 20 keys x ``--long-steps`` steps, where the page's ``max_points`` (about a
  chart's width in pixels) makes the server downsample (LTTB); ``run_long_all_points`` is the
  same page with ``?points=all``, every point fetched as the page did before: a ratio of the two
  from the same run.

Each figure is the median of ``--repeat`` fresh page loads (each in a new browser context, one
warm-up first), with the size of the page's main API response. ``--baseline DIR`` serves
another checkout of RegLab (``git worktree add DIR REV``) beside this one, on a copy of the same
database, and alternates every load between the two: each page gets the baseline's medians and
the ratio this/baseline, measured under the same load. Targets: runs under 1 s, run page under
0.5 s; exits non-zero when a median misses its target.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from service.db.migrate import upgrade_to_head  # noqa: E402
from service.db.models import Experiment, Metric, utcnow  # noqa: E402
from service.db.session import make_engine  # noqa: E402
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, Server, start_server, tiny  # noqa: E402

KEYS = ["train_loss", "val_loss", "test_loss", "train_acc", "val_acc", "test_acc", "gen_gap",
        "ece", "confidence", "weight_l1", "weight_l2", "sparsity", "lr", "penalty",
        "train_batch_loss", "sys_cpu_percent", "sys_rss_mb", "sys_epoch_s", "grad_norm",
        "update_ratio"]  # fmt: skip

#: the API call each page waits for most, whose size is reported
MAIN_CALL = {"runs": "/v1/experiments?", "run": "/metrics"}

MEASURE = """() => {
  const calls = performance.getEntriesByType('resource').filter(e => e.name.includes('/v1/'));
  const main = calls.find(e => e.name.includes(%s));
  return {rendered: window.__reglab.rendered.at, lastRender: window.__reglab.lastRender,
          kb: main ? main.encodedBodySize / 1024 : null};
}"""


def seed(url: str, runs: int, epochs: int, long_steps: int) -> tuple[str, str]:
    """``runs`` succeeded experiments; the newest has every key for ``epochs`` epochs, the one
    before it for ``long_steps`` steps. Returns their ids."""
    upgrade_to_head(url)
    engine = make_engine(url)
    rng = random.Random(0)
    now = utcnow()
    rows: list[dict[str, Any]] = []
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
    long_id, short_id = rows[-2]["id"], rows[-1]["id"]
    with Session(engine) as session:
        session.execute(insert(Experiment), rows)
        for eid, steps in ((short_id, epochs), (long_id, long_steps)):
            points = [
                {"experiment_id": eid, "key": k, "step": s, "value": rng.random()}
                for k in KEYS
                for s in range(1, steps + 1)
            ]
            session.execute(insert(Metric), points)
        session.commit()
    engine.dispose()
    return short_id, long_id


def load(browser, url: str, main_call: str) -> dict:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_selector("#view[data-ready=true]", timeout=60_000)
    while not page.evaluate("window.__reglab && window.__reglab.rendered"):
        page.wait_for_timeout(5)
    wall = (time.perf_counter() - t0) * 1000
    figures = page.evaluate(MEASURE % json.dumps(main_call))
    context.close()
    last = figures.get("lastRender") or {}
    return {"wall_ms": wall, "rendered_ms": figures["rendered"], "draw_ms": last.get("ms"),
            "api_kb": figures["kb"], "max_points": last.get("maxPoints")}  # fmt: skip


def measure(browser, bases: list[str], route: str, repeat: int) -> list[list[dict]]:
    """``repeat`` loads of ``route`` on each server, alternating, each round in the order the
    round before ended with (A B, B A, ...: neither goes first every time); one warm-up each."""
    main_call = MAIN_CALL["run" if route.startswith("runs/") else "runs"]
    out: list[list[dict]] = [[] for _ in bases]
    for i in range(repeat + 1):
        order = list(zip(out, bases, strict=True))
        for samples, base in order if i % 2 == 0 else order[::-1]:
            got = load(browser, f"{base}/ui/#/{route}", main_call)
            if i:  # the first load warms the server and the browser's compile cache
                samples.append(got)
    return out


def median(samples: list[dict], key: str) -> float | None:
    values = [s[key] for s in samples if s[key] is not None]
    return round(statistics.median(values), 1) if values else None


def summary(samples: list[dict]) -> dict:
    out = {key: median(samples, key) for key in ("rendered_ms", "wall_ms", "draw_ms", "api_kb")}
    out["max_points"] = samples[0]["max_points"]
    return {k: v for k, v in out.items() if v is not None}


def start_baseline(checkout: Path, cwd: Path) -> Server:
    """``reglab serve`` of another checkout (its code first on the path) on ``cwd``'s copy of
    the database, left as seeded (``--no-migrate``: its migrations may be older)."""
    env = {"PYTHONPATH": str(checkout)}
    return start_server(cwd, "--no-worker", "--no-migrate", env=env)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=500)
    ap.add_argument("--long-steps", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--baseline", type=Path, help="another RegLab checkout to compare with")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp) / "this"
        short_id, long_id = seed(
            f"sqlite:///{cwd}/var/reglab.db", args.runs, args.epochs, args.long_steps
        )
        servers = [start_server(cwd, "--no-worker")]
        if args.baseline:
            other = Path(tmp) / "baseline"
            shutil.copytree(cwd / "var", other / "var")
            servers.append(start_baseline(args.baseline.resolve(), other))
        pages = {
            "runs_page_50_rows": "runs",
            "runs_page_500_rows": "runs?limit=500",
            "run_page": f"runs/{short_id}",
            "run_page_long": f"runs/{long_id}",
            "run_page_long_all_points": f"runs/{long_id}?points=all",
        }
        report: dict = {
            "runs_in_db": args.runs,
            "run_page": f"{len(KEYS)} keys x {args.epochs} epochs",
            "run_page_long": f"{len(KEYS)} keys x {args.long_steps} steps",
            "load_average": [round(x, 1) for x in os.getloadavg()],
        }
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                bases = [s.url for s in servers]
                for name, route in pages.items():
                    this, *baseline = measure(browser, bases, route, args.repeat)
                    report[name] = summary(this)
                    if baseline:
                        before = summary(baseline[0])
                        report[name]["baseline"] = before
                        report[name]["ratio_rendered"] = round(
                            report[name]["rendered_ms"] / before["rendered_ms"], 2
                        )
                browser.close()
        finally:
            for server in servers:
                server.http.close()
                server.proc.stop()
    long, whole = report["run_page_long"], report["run_page_long_all_points"]
    report["run_page_long_vs_all_points"] = round(long["rendered_ms"] / whole["rendered_ms"], 2)
    report["load_average_after"] = [round(x, 1) for x in os.getloadavg()]
    print(json.dumps(report, indent=2))
    runs_ms, run_ms = report["runs_page_50_rows"]["rendered_ms"], report["run_page"]["rendered_ms"]
    return 0 if runs_ms < 1000 and run_ms < 500 else 1


if __name__ == "__main__":
    sys.exit(main())
