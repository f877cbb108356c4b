"""GET /v1/experiments/{id}/logs: in order, after a seq, owner-scoped; follow streams to the end."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from service.api.routes import logs as route
from service.db import api_keys, jobs, logs
from service.db.models import Experiment, utcnow
from service.main import create_app
from service.settings import Settings
from tests.worker.helpers import add_experiment

BASE_URL = "http://127.0.0.1"


@pytest.fixture
def setup(sessions, tmp_path):
    url = str(sessions.kw["bind"].url.render_as_string(hide_password=False))
    settings = Settings(
        database_url=url, broker_dir=tmp_path / "broker", artifacts=str(tmp_path / "store"),
        cache_dir=tmp_path / "cache", auth="on",
    )  # fmt: skip
    with sessions.begin() as s:
        _, ada = api_keys.create(s, "ada")
        _, bob = api_keys.create(s, "bob")
    with TestClient(create_app(settings), base_url=BASE_URL) as client:
        yield client, {"ada": ada, "bob": bob}


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _running(sessions) -> tuple[str, int]:
    eid = add_experiment(sessions, owner="ada")
    with sessions.begin() as s:
        return eid, jobs.claim(s, eid, "w1", 30).attempts


def _write(sessions, eid, attempt, *messages) -> None:
    with sessions.begin() as s:
        lines = [logs.LogLine("INFO", "worker.tasks", m) for m in messages]
        assert logs.append(s, eid, "w1", attempt, lines, 100)


def _finish(sessions, eid, ago_s: float = 0.0) -> None:
    with sessions.begin() as s:
        assert jobs.finish(s, eid, "w1", "succeeded")
        s.get(Experiment, eid).finished_at = utcnow() - timedelta(seconds=ago_s)


def _events(response) -> list[tuple[str, dict, str | None]]:
    out, kind, ident = [], None, None
    for line in response.iter_lines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("id: "):
            ident = line[4:]
        elif line.startswith("data: "):
            out.append((kind, json.loads(line[6:]), ident))
            kind, ident = None, None
    return out


def test_lines_come_in_order_and_after_a_seq(setup, sessions):
    client, keys = setup
    eid, attempt = _running(sessions)
    _write(sessions, eid, attempt, "claimed", "epoch 1", "epoch 2")
    body = client.get(f"/v1/experiments/{eid}/logs", headers=_h(keys["ada"])).json()
    assert [(i["seq"], i["message"]) for i in body["items"]] == [
        (1, "claimed"), (2, "epoch 1"), (3, "epoch 2"),
    ]  # fmt: skip
    assert body["next_since"] == body["last_seq"] == 3 and body["status"] == "running"
    assert body["items"][0]["level"] == "INFO" and body["items"][0]["attempt"] == attempt
    later = client.get(f"/v1/experiments/{eid}/logs?since=1&limit=1", headers=_h(keys["ada"]))
    assert [i["message"] for i in later.json()["items"]] == ["epoch 1"]
    assert later.json()["next_since"] == 2


def test_another_owners_logs_are_not_found_and_bad_parameters_are_named(setup, sessions):
    client, keys = setup
    eid, attempt = _running(sessions)
    _write(sessions, eid, attempt, "secret line")
    for follow in ("false", "true"):
        r = client.get(f"/v1/experiments/{eid}/logs?follow={follow}", headers=_h(keys["bob"]))
        assert r.status_code == 404 and "secret" not in r.text
    assert client.get(f"/v1/experiments/{eid}/logs").status_code == 401
    assert client.get("/v1/experiments/nope/logs", headers=_h(keys["ada"])).status_code == 404
    r = client.get(f"/v1/experiments/{eid}/logs?since=-1", headers=_h(keys["ada"]))
    assert r.status_code == 422 and "since" in r.text


def test_follow_streams_new_lines_and_ends_when_the_run_ends(setup, sessions, monkeypatch):
    monkeypatch.setattr(route, "POLL_S", 0.05)
    monkeypatch.setattr(route, "SETTLE_S", 0.3)
    client, keys = setup
    eid, attempt = _running(sessions)
    _write(sessions, eid, attempt, "claimed")

    def worker() -> None:
        time.sleep(0.3)
        _write(sessions, eid, attempt, "epoch 1", "epoch 2")
        time.sleep(0.2)
        _finish(sessions, eid)
        _write(sessions, eid, attempt, "succeeded")  # the outcome line, after the outcome

    thread = threading.Thread(target=worker)
    thread.start()
    t0 = time.monotonic()
    with client.stream(
        "GET", f"/v1/experiments/{eid}/logs?follow=true", headers=_h(keys["ada"])
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = _events(r)
    thread.join()
    assert time.monotonic() - t0 < 10
    assert [(k, d.get("message")) for k, d, _ in events] == [
        ("log", "claimed"), ("log", "epoch 1"), ("log", "epoch 2"), ("log", "succeeded"),
        ("end", None),
    ]  # fmt: skip
    assert [ident for _, _, ident in events[:-1]] == ["1", "2", "3", "4"]
    assert events[-1][1] == {"status": "succeeded", "last_seq": 4}


def test_follow_of_an_ended_run_sends_what_is_left_and_ends_at_once(setup, sessions):
    client, keys = setup
    eid, attempt = _running(sessions)
    _write(sessions, eid, attempt, "a", "b", "c")
    _finish(sessions, eid, ago_s=60)
    t0 = time.monotonic()
    with client.stream(
        "GET", f"/v1/experiments/{eid}/logs?follow=true&since=1",
        headers={**_h(keys["ada"]), "Last-Event-ID": "2"},
    ) as r:  # fmt: skip
        events = _events(r)
    assert time.monotonic() - t0 < 5
    assert [(k, d.get("message")) for k, d, _ in events] == [("log", "c"), ("end", None)]
