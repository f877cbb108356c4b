"""``reglab submit``, ``reglab sweep`` and ``reglab compare`` against a server with auth on: the
key comes from ``--api-key`` or ``REGLAB_API_KEY``; without one they fail with the 401."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from typer.testing import CliRunner

from reglab.cli import app as reglab
from tests.security.conftest import spec

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def live_url(app) -> Iterator[str]:
    """The auth-on app served by uvicorn in a thread, on a free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def run(args: list[str], env_key: str | None = None):
    # REGLAB_API_KEY is set (or removed) explicitly, so the caller's environment cannot leak in.
    result = CliRunner().invoke(reglab, args, env={"REGLAB_API_KEY": env_key})
    return result, " ".join(result.output.split())


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec(name="cli-key")))
    return path


def test_submit_with_api_key_or_the_env_var_is_accepted_and_owned_by_the_key(
    live_url, spec_file, keys, client
):
    result, _ = run(["submit", str(spec_file), "--api-url", live_url, "--api-key", keys["ada"]])
    assert result.exit_code == 0, result.output
    by_flag = result.stdout.strip().splitlines()[-1]
    result, _ = run(["submit", str(spec_file), "--api-url", live_url], env_key=keys["ada"])
    assert result.exit_code == 0, result.output
    by_env = result.stdout.strip().splitlines()[-1]
    auth = {"Authorization": f"Bearer {keys['ada']}"}
    for eid in (by_flag, by_env):
        assert client.get(f"/v1/experiments/{eid}", headers=auth).json()["name"] == "cli-key"


def test_submit_without_a_key_exits_non_zero_with_the_401(live_url, spec_file):
    result, text = run(["submit", str(spec_file), "--api-url", live_url])
    assert result.exit_code == 1
    assert "401" in text and "requires an API key" in text
    assert "--api-key" in text and "REGLAB_API_KEY" in text


def test_submit_with_a_revoked_key_exits_non_zero(live_url, spec_file, keys):
    result, text = run(["submit", str(spec_file), "--api-url", live_url], env_key=keys["revoked"])
    assert result.exit_code == 1 and "401" in text and "unknown or revoked" in text


def test_sweep_and_compare_send_the_key(live_url, tmp_path, keys, client):
    body = tmp_path / "sweep.json"
    body.write_text(
        json.dumps(
            {
                "name": "cli-sweep",
                "base": spec(),
                "space": {"train.lr": [0.01, 0.1]},
                "metric": "val_acc",
            }
        )
    )
    result, text = run(["sweep", str(body), "--api-url", live_url])
    assert result.exit_code == 1 and "401" in text

    result, _ = run(["sweep", str(body), "--api-url", live_url, "--api-key", keys["bob"]])
    assert result.exit_code == 0, result.output
    sweep_id = result.stdout.strip().splitlines()[-1]
    auth = {"Authorization": f"Bearer {keys['bob']}"}
    sweep = client.get(f"/v1/sweeps/{sweep_id}", headers=auth).json()
    ids = [e["experiment_id"] for e in sweep["experiments"] if e["experiment_id"]]
    assert ids

    result, text = run(["compare", *ids, "--api-url", live_url])
    assert result.exit_code == 1 and "401" in text
    result, text = run(["compare", *ids, "--api-url", live_url], env_key=keys["bob"])
    assert result.exit_code == 0, result.output
    assert ids[0][:8] in text
    # Another owner's key sees none of bob's runs.
    result, text = run(["compare", *ids, "--api-url", live_url, "--api-key", keys["ada"]])
    assert result.exit_code == 1 and "404" in text
