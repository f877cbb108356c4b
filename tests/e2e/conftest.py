"""The dashboard in a real browser: Debian's Chromium (``/usr/bin/chromium``, installed by
``scripts/ensure-browser.sh``) driven headless by the Python ``playwright`` package (which never
downloads a browser here) against a real ``reglab serve`` on the embedded default, with real
tiny runs. Every page fixture fails its test on a console error, an uncaught exception or a
request to any host but 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.integration.conftest import Proc, free_port, serve
from tests.services import unavailable

CHROMIUM = os.environ.get("REGLAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def tiny(name: str, regularizers: list[dict] | None = None, seed: int = 0, epochs: int = 3) -> dict:
    return {
        "name": name,
        "seed": seed,
        "data": {"name": "mnist1d", "n_train": 200, "n_val": 100, "n_test": 100},
        "model": {"name": "mlp", "hidden": [16]},
        "regularizers": regularizers or [],
        "train": {"lr": 0.05, "batch_size": 50, "epochs": epochs, "device": "cpu"},
    }


class Server:
    def __init__(self, url: str, proc: Proc):
        self.url = url
        self.proc = proc
        self.http = httpx.Client(base_url=url, timeout=30)

    def submit(self, spec: dict) -> dict:
        resp = self.http.post("/v1/experiments", json=spec)
        assert resp.status_code == 202, resp.text
        return resp.json()

    def wait(self, experiment_id: str, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            row = self.http.get(f"/v1/experiments/{experiment_id}").json()
            if row["status"] in ("succeeded", "failed", "cancelled"):
                return row
            assert time.monotonic() < deadline, (row, self.proc.tail())
            time.sleep(0.3)

    def wait_sweep(self, sweep_id: str, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            row = self.http.get(f"/v1/sweeps/{sweep_id}").json()
            if row["status"] not in ("running", "queued", "pending"):
                return row
            assert time.monotonic() < deadline, (row["counts"], self.proc.tail())
            time.sleep(0.5)


def start_server(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Server:
    port = free_port()
    proc = serve(cwd, port, *args, env=env, timeout=90)
    url = f"http://127.0.0.1:{port}"
    return Server(url, proc)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"{CHROMIUM} is missing (scripts/ensure-browser.sh installs it)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


class Watched:
    """A page whose console errors, uncaught exceptions and request hosts are recorded."""

    def __init__(self, page: Any, base: str):
        self.page = page
        self.base = base
        self.errors: list[str] = []
        self.hosts: set[str] = set()
        self.expected: list[re.Pattern[str]] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        page.on("request", lambda req: self.hosts.add(urlsplit(req.url).hostname or req.url))

    def _console(self, msg: Any) -> None:
        if msg.type == "error" and not any(p.search(msg.text) for p in self.expected):
            self.errors.append(msg.text)

    def expect_console_error(self, pattern: str) -> None:
        """A console line the test causes on purpose (Chromium logs every 4xx response)."""
        self.expected.append(re.compile(pattern))

    def open(self, route: str) -> Any:
        """Open ``#/route`` and wait until the page says it rendered."""
        self.page.goto(f"{self.base}/ui/#/{route}")
        self.page.wait_for_selector("#view[data-ready=true]", timeout=30_000)
        return self.page

    def js(self, expression: str) -> Any:
        return self.page.evaluate(expression)

    def wait(self, expression: str, timeout: float = 30.0) -> Any:
        """Poll ``expression`` until truthy (``page.wait_for_function`` evaluates its predicate
        with eval, which the dashboard's Content-Security-Policy forbids)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.page.evaluate(expression)
            if value:
                return value
            assert time.monotonic() < deadline, f"still false after {timeout} s: {expression}"
            self.page.wait_for_timeout(100)


@pytest.fixture
def watched(browser: Any, server: Server) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    w = Watched(page, server.url)
    yield w
    context.close()
    assert not w.errors, f"console errors: {w.errors}"
    assert w.hosts <= {"127.0.0.1"}, f"requests to other hosts: {w.hosts - {'127.0.0.1'}}"
