"""The Python client and ``reglab submit``, against the app in-process and a live uvicorn."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from reglab.client import (
    InvalidSpecError,
    NotFoundError,
    RegLabAPIError,
    RegLabClient,
    RegLabConnectionError,
    RegLabError,
    WaitTimeout,
)
from service.db.migrate import upgrade_to_head
from service.db.models import Checkpoint, Experiment, Metric
from service.db.session import make_engine, make_sessionmaker

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(90)


def spec(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "client-test",
        "data": {"name": "mnist1d", "n_train": 300, "n_val": 100, "n_test": 100},
        "model": {"name": "mlp", "hidden": [32]},
        "train": {"epochs": 3, "device": "cpu"},
        "regularizers": [{"name": "l2", "strength": 0.001}],
    }
    body.update(over)
    return body


@pytest.fixture
def lab(client) -> RegLabClient:
    return RegLabClient(http=client)


def test_submit_get_and_list(lab):
    exp = lab.submit(spec(), idempotency_key="once")
    assert exp["status"] == "queued"
    assert lab.get(exp["id"])["id"] == exp["id"]
    assert lab.submit(spec(), idempotency_key="once")["id"] == exp["id"]
    assert [e["id"] for e in lab.iter_experiments(name="client-test", page_size=1)] == [exp["id"]]


def test_submit_accepts_a_spec_file(lab, tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec(name="from-file")))
    assert lab.submit(path)["name"] == "from-file"


def test_a_bad_spec_raises_with_the_field_path_and_message(lab):
    bad = spec(regularizers=[{"name": "l2"}, {"name": "dropout", "p": 2}])
    with pytest.raises(InvalidSpecError) as info:
        lab.submit(bad)
    assert info.value.status == 422
    assert info.value.fields == ["regularizers[1].p"]
    assert "regularizers[1].p" in str(info.value)


def test_unknown_ids_raise_not_found_with_the_server_message(lab):
    with pytest.raises(NotFoundError, match="experiment nope does not exist"):
        lab.get("nope")


def test_cancel(lab):
    exp = lab.submit(spec())
    assert lab.cancel(exp["id"])["status"] == "cancelled"


def test_cancel_of_a_finished_experiment_raises_the_conflict(lab, sessions):
    exp = lab.submit(spec())
    with sessions.begin() as s:
        s.get(Experiment, exp["id"]).status = "failed"
    with pytest.raises(RegLabAPIError) as info:
        lab.cancel(exp["id"])
    assert info.value.status == 409 and "already ended failed" in str(info.value)


def test_metrics_by_key_with_max_points(lab, sessions):
    eid = lab.submit(spec())["id"]
    with sessions.begin() as s:
        s.add_all(
            Metric(experiment_id=eid, key="val_loss", step=i, value=1 / i) for i in range(1, 51)
        )
        s.add(Metric(experiment_id=eid, key="train_loss", step=1, value=0.3))
    series = lab.metrics(eid, keys=["val_loss"], max_points=5)
    assert list(series) == ["val_loss"]
    assert [p["step"] for p in series["val_loss"]][0::4] == [1, 50]
    assert len(series["val_loss"]) == 5


def test_wait_calls_back_with_progress_until_the_experiment_ends(lab, sessions):
    eid = lab.submit(spec())["id"]
    seen: list[tuple[str, int]] = []

    def act_as_the_worker(experiment: dict[str, Any]) -> None:
        seen.append((experiment["status"], experiment["progress"]["epoch"]))
        with sessions.begin() as s:
            row = s.get(Experiment, eid)
            if row.status == "queued":
                row.status = "running"
            elif row.last_epoch < 3:
                row.last_epoch += 1
            else:
                row.status, row.summary = "succeeded", {"epochs_run": 3}

    final = lab.wait(eid, timeout=30, poll=0.01, on_progress=act_as_the_worker)
    assert final["status"] == "succeeded" and final["summary"] == {"epochs_run": 3}
    assert seen == [
        ("queued", 0),
        ("running", 0),
        ("running", 1),
        ("running", 2),
        ("running", 3),
        ("succeeded", 3),
    ]


def test_wait_times_out_with_the_last_state(lab):
    eid = lab.submit(spec())["id"]
    start = time.monotonic()
    with pytest.raises(WaitTimeout) as info:
        lab.wait(eid, timeout=0.3, poll=0.05)
    assert time.monotonic() - start < 5
    assert info.value.experiment["status"] == "queued"


def test_download_checkpoint_writes_the_file_and_checks_its_digest(
    lab, sessions, settings, tmp_path
):
    eid = lab.submit(spec())["id"]
    data = os.urandom(300_000)  # a real safetensors file: the API serves nothing else
    n = len(data)
    header = json.dumps({"w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}})
    payload = len(header).to_bytes(8, "little") + header.encode() + data
    key = f"{eid}/checkpoints/best-0002.safetensors"
    stored = Path(settings.artifacts) / key
    stored.parent.mkdir(parents=True)
    stored.write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    with sessions.begin() as s:
        s.add(
            Checkpoint(
                id="a" * 32,
                experiment_id=eid,
                kind="best",
                epoch=2,
                uri=key,
                size=len(payload),
                sha256=digest,
            )
        )
    [ckpt] = lab.checkpoints(eid)
    (tmp_path / "dl").mkdir()
    out = lab.download_checkpoint(eid, ckpt["id"], tmp_path / "dl", sha256=ckpt["sha256"])
    assert out.parent == tmp_path / "dl" and out.read_bytes() == payload
    with pytest.raises(RegLabError, match="corrupted"):
        lab.download_checkpoint(eid, ckpt["id"], tmp_path / "bad.safetensors", sha256="0" * 64)
    assert not (tmp_path / "bad.safetensors").exists()
    with pytest.raises(NotFoundError):
        lab.download_checkpoint(eid, "b" * 32, tmp_path / "missing.safetensors")
    assert not (tmp_path / "missing.safetensors").exists()
    assert not (tmp_path / "missing.safetensors.part").exists()


def test_an_unreachable_server_raises_a_connection_error_naming_it():
    with RegLabClient("http://127.0.0.1:1", timeout=2) as lab:
        with pytest.raises(RegLabConnectionError, match="127.0.0.1:1"):
            lab.health()


# --- a live server ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[dict[str, str]]:
    """uvicorn serving service.main:app on SQLite and the filesystem broker, without a worker."""
    url = f"sqlite:///{tmp_path / 'live.db'}"
    upgrade_to_head(url)
    port = _free_port()
    env = os.environ | {
        "REGLAB_DATABASE_URL": url,
        "REGLAB_BROKER_DIR": str(tmp_path / "broker"),
        "REGLAB_ARTIFACTS": str(tmp_path / "artifacts"),
        "REGLAB_API_URL": f"http://127.0.0.1:{port}",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "service.main:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{env['REGLAB_API_URL']}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, "uvicorn exited"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.1)
        yield env
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_client_and_reglab_submit_against_a_live_server(live_server, tmp_path):
    with RegLabClient(live_server["REGLAB_API_URL"]) as lab:
        assert lab.ready()["status"] == "ready"
        exp = lab.submit(spec(name="live"))
        assert lab.get(exp["id"])["status"] == "queued"

        good = tmp_path / "good.json"
        good.write_text(json.dumps(spec(name="via-cli")))
        reglab = [sys.executable, "-m", "reglab.cli"]
        result = subprocess.run(
            [*reglab, "submit", str(good)],
            env=live_server,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        cli_id = result.stdout.strip()
        assert lab.get(cli_id)["name"] == "via-cli"

        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(spec(regularizers=[{"name": "dropout", "p": -1}])))
        result = subprocess.run(
            [*reglab, "submit", str(bad)],
            env=live_server,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2
        assert "regularizers[0].p" in result.stderr

        # --wait gives up after --timeout with the state it last saw.
        result = subprocess.run(
            [*reglab, "submit", str(good), "--wait", "--timeout", "0.5", "--poll", "0.1"],
            env=live_server,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1 and "still queued" in result.stderr

        # --wait follows the experiment to its end and prints the summary; we play the worker.
        proc = subprocess.Popen(
            [
                *reglab,
                "submit",
                str(good),
                "--wait",
                "--poll",
                "0.1",
                "--idempotency-key",
                "follow-me",
            ],
            env=live_server,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        engine = make_engine(live_server["REGLAB_DATABASE_URL"])
        sessions = make_sessionmaker(engine)
        try:
            deadline = time.monotonic() + 30
            while True:
                with sessions() as s:
                    row = s.scalars(
                        select(Experiment).filter_by(idempotency_key="follow-me")
                    ).first()
                if row is not None:
                    break
                assert time.monotonic() < deadline
                time.sleep(0.05)
            with sessions.begin() as s:
                row = s.get(Experiment, row.id)
                row.status, row.last_epoch = "running", 2
            time.sleep(0.3)
            with sessions.begin() as s:
                row = s.get(Experiment, row.id)
                row.status, row.last_epoch = "succeeded", 3
                row.summary = {"epochs_run": 3, "best_epoch": 3, "metrics": {"val_acc": 0.875}}
            stdout, stderr = proc.communicate(timeout=30)
        finally:
            engine.dispose()
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, stderr
        assert "succeeded" in stdout and "val_acc" in stdout and "0.875" in stdout
