"""Uploads trained on through the real service (``reglab serve`` on PostgreSQL + Redis and a
``reglab worker`` process) and through the embedded default (``reglab serve``, nothing set)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from reglab.client import RegLabClient
from tests.datasets import files as F
from tests.integration.conftest import PYTHON, ROOT, Stack, clean_env, free_port
from tests.integration.test_embedded import serve

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

TRAIN = {"optimizer": "adam", "lr": 0.01, "epochs": 15, "batch_size": 32, "device": "cpu"}


def write_files(folder: Path) -> list[tuple[Path, dict[str, Any], dict[str, Any]]]:
    """(file, upload form, model) for each format; labels a simple function of the inputs."""
    x, y = F.table(n=500)
    xi, yi = F.images(400)
    out = []
    for name, data, form in (
        ("t.npz", F.npz(x=x, y=y), {}),
        ("t.csv", F.csv(x, y), {"target": "label"}),
        ("t.parquet", F.parquet(x, y), {"target": "label"}),
        ("i.npz", F.npz(x=xi, y=yi), {}),
    ):
        (folder / name).write_bytes(data)
        model = (
            {"name": "cnn2d", "channels": [8]}
            if name == "i.npz"
            else {"name": "mlp", "hidden": [16]}
        )
        out.append((folder / name, form, model))
    return out


def train_each_format(api: RegLabClient, folder: Path, wait) -> dict[str, float]:
    accs = {}
    submitted = []
    for path, form, model in write_files(folder):
        d = api.upload_dataset(path, **form)
        spec = {"name": path.name, "data": {"name": "upload", "id": d["id"]}, "model": model,
                "train": TRAIN}  # fmt: skip
        # an Idempotency-Key lets the client retry a 503 (SQLite busy under the embedded worker)
        submitted.append((path.name, api.submit(spec, idempotency_key=path.name)["id"], d))
    for name, eid, d in submitted:
        exp = wait(eid)
        assert exp["status"] == "succeeded", exp["error"]
        accs[name] = exp["summary"]["metrics"]["test_acc"]
        # provenance names what was trained on: the stored file's sha256, as uploaded
        dataset = exp["environment"]["dataset"]
        assert (dataset["id"], dataset["sha256"]) == (d["id"], d["sha256"]), dataset
    return accs


def test_each_format_trains_through_the_real_service(workers: Stack, tmp_path: Path):
    workers.start_worker()

    def wait(eid: str) -> dict:
        return workers.wait(eid, lambda e: e["status"] in ("succeeded", "failed"), timeout=150)

    accs = train_each_format(workers.api, tmp_path, wait)
    assert all(a > 0.95 for a in accs.values()), accs

    # the CLI, against the same service: upload (the same content, so the same id) and list
    base = workers.api.base_url
    cli = [PYTHON, "-m", "reglab.cli", "datasets"]
    env = clean_env(REGLAB_API_URL=base)
    up = subprocess.run([*cli, "upload", str(tmp_path / "t.csv"), "--target", "label",
                         "-o", "json"], env=env, cwd=ROOT, capture_output=True, text=True,
                        timeout=60)  # fmt: skip
    assert up.returncode == 0, up.stderr
    ident = json.loads(up.stdout)["id"]
    assert ident in {d.get("id") for d in workers.api.datasets()}
    shown = subprocess.run([*cli, "show", ident[:8], "-o", "json"], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert shown.returncode == 0 and json.loads(shown.stdout)["id"] == ident
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"a,label\n1,0\nx,1\n")
    refused = subprocess.run([*cli, "upload", str(bad)], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert refused.returncode == 2 and "column a" in refused.stderr


def test_each_format_trains_through_the_embedded_default(tmp_path: Path):
    port = free_port()
    server = serve(tmp_path, port)
    try:
        with RegLabClient(f"http://127.0.0.1:{port}") as api:
            accs = train_each_format(api, tmp_path, lambda eid: api.wait(eid, 150, poll=0.3))
    finally:
        server.stop()
    assert all(a > 0.95 for a in accs.values()), accs


def test_a_tie_reference_by_checkpoint_id_runs_on_the_worker(workers: Stack, tmp_path: Path):
    workers.start_worker()
    x, y = F.table(n=300)
    (tmp_path / "t.npz").write_bytes(F.npz(x=x, y=y))
    ds = workers.api.upload_dataset(tmp_path / "t.npz")["id"]
    base = {"data": {"name": "upload", "id": ds}, "model": {"name": "mlp", "hidden": [8]},
            "train": {**TRAIN, "epochs": 3}}  # fmt: skip

    def wait(eid: str) -> dict:
        return workers.wait(eid, lambda e: e["status"] in ("succeeded", "failed"), timeout=150)

    first = wait(workers.api.submit(base)["id"])
    assert first["status"] == "succeeded", first["error"]
    ckpt = workers.api.checkpoints(first["id"])[-1]["id"]
    tie = [{"name": "tie", "strength": 10.0, "reference": ckpt, "exclude": []}]
    second = wait(workers.api.submit({**base, "seed": 1, "regularizers": tie})["id"])
    assert second["status"] == "succeeded", second["error"]
    series = workers.api.metrics(second["id"], ["tie_distance"])
    assert series["tie_distance"], series
