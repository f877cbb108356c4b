"""Run the demo comparison through the embedded service: `reglab serve` as a subprocess on the
embedded default (SQLite, a broker that needs no server, local checkpoints), the specs submitted
over HTTP with the Python client, progress followed from the API, the service stopped at the end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from reglab.client import RegLabClient, RegLabError

console = Console(stderr=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_service(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    workdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGLAB_")}
    reglab = Path(sys.executable).with_name("reglab")
    log = open(workdir / "service.log", "wb")  # noqa: SIM115 - lives as long as the service
    return subprocess.Popen(
        [str(reglab), "serve", "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_ready(client: RegLabClient, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"reglab serve exited with {proc.returncode}; see service.log")
        try:
            client.ready()
            return
        except RegLabError:  # not listening yet, or 503 while the worker starts
            time.sleep(0.3)
    raise TimeoutError("reglab serve did not become ready")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_through_service(specs: dict[str, dict[str, Any]], out: Path) -> dict[str, Any]:
    port = _free_port()
    proc = _start_service(out / "service", port)
    client = RegLabClient(f"http://127.0.0.1:{port}")
    try:
        _wait_ready(client, proc)
        console.print(f"reglab serve is up on port {port} (embedded default, in {out / 'service'})")
        ids = {name: client.submit(spec)["id"] for name, spec in specs.items()}
        progress = Progress(
            TextColumn("{task.description:16s}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
        )
        results: dict[str, Any] = {}
        with progress:
            bars = {
                name: progress.add_task(name, total=specs[name]["train"]["epochs"], status="queued")
                for name in ids
            }
            pending = dict(ids)
            while pending:
                for name, eid in list(pending.items()):
                    exp = client.get(eid)
                    prog = exp.get("progress") or {}
                    progress.update(
                        bars[name], completed=prog.get("epoch", 0), status=exp["status"]
                    )
                    if exp["status"] in ("succeeded", "failed", "cancelled"):
                        summary = exp.get("summary") or {"status": exp["status"], "metrics": {}}
                        summary.setdefault("status", exp["status"])
                        if exp["status"] == "succeeded":  # early stopping ends before `epochs`
                            progress.update(bars[name], total=prog.get("epoch", 0))
                        series = client.metrics(eid, keys=["train_loss", "val_loss", "gen_gap"])
                        results[name] = {
                            "summary": summary,
                            "series": series,
                            "error": exp.get("error"),
                        }
                        del pending[name]
                time.sleep(0.5)
        return {name: results[name] for name in ids}
    finally:
        _stop(proc)
