"""Sweeps, compare, and filter/sort of experiments through the API (SQLite and PostgreSQL).
No worker: the tests write what a worker would (metrics, statuses, summaries) directly."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select, update

from service.db import jobs, latest
from service.db import sweeps as sweeps_repo
from service.db.models import Experiment, Metric

BASE = {
    "data": {"name": "mnist1d", "n_train": 300, "n_val": 100, "n_test": 100},
    "model": {"name": "mlp", "hidden": [32]},
    "train": {"epochs": 8, "device": "cpu"},
    "regularizers": [{"name": "l2", "strength": 1e-3}],
}


def submit(client, **extra: Any) -> dict[str, Any]:
    r = client.post("/v1/experiments", json={**BASE, **extra})
    assert r.status_code == 202, r.text
    return r.json()


def finish(sessions, eid: str, status: str = "succeeded", metrics: dict | None = None) -> None:
    with sessions.begin() as s:
        s.execute(
            update(Experiment)
            .where(Experiment.id == eid)
            .values(status=status, summary={"metrics": metrics or {}, "epochs_run": 8})
        )
        if metrics:
            latest.upsert(s, eid, 8, metrics)


def record(sessions, eid: str, step: int, **metrics: float) -> None:
    with sessions.begin() as s:
        s.add_all(Metric(experiment_id=eid, key=k, step=step, value=v) for k, v in metrics.items())
        latest.upsert(s, eid, step, metrics)


# --- filter and sort --------------------------------------------------------------------------


def test_experiments_filter_and_sort_by_their_latest_metric(client, sessions):
    a, b, c, d = (submit(client, name=n)["id"] for n in "abcd")
    finish(sessions, a, metrics={"test_acc": 0.9})
    finish(sessions, b, metrics={"test_acc": 0.7})
    finish(sessions, c, "failed", metrics={"test_acc": 0.95})
    # d has no test_acc at all

    def ids(**params) -> list[str]:
        r = client.get("/v1/experiments", params=params)
        assert r.status_code == 200, r.text
        return [e["id"] for e in r.json()["items"]]

    assert ids(filter="test_acc>0.8 and status=succeeded") == [a]
    assert set(ids(filter="test_acc>=0.7")) == {a, b, c}
    assert ids(filter="test_acc>0.8", sort="-test_acc") == [c, a]
    assert ids(sort="-test_acc") == [c, a, b, d]  # missing values last
    assert ids(sort="test_acc") == [b, a, c, d]
    assert ids(filter="status!=succeeded and name=d") == [d]

    first = client.get("/v1/experiments", params={"sort": "-test_acc", "limit": 3}).json()
    assert [e["id"] for e in first["items"]] == [c, a, b]
    rest = client.get(
        "/v1/experiments", params={"sort": "-test_acc", "limit": 3, "cursor": first["next_cursor"]}
    ).json()
    assert [e["id"] for e in rest["items"]] == [d] and rest["next_cursor"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"filter": "test_acc>0.8; DROP TABLE experiments"},
        {"filter": "test_acc>0.8 or 1=1"},
        {"filter": "status='succeeded' or '1'='1'"},
        {"filter": "test_acc>0) UNION SELECT key_hash FROM api_keys --"},
        {"filter": "name=x' OR 'a'='a"},
        {"sort": "test_acc; DELETE FROM experiments"},
        {"sort": "-(SELECT 1)"},
    ],
)
def test_filter_and_sort_injection_attempts_answer_422_and_change_nothing(client, sessions, params):
    submit(client)
    r = client.get("/v1/experiments", params=params)
    assert r.status_code == 422
    body = r.json()
    assert body["title"] == "invalid request"
    assert body["errors"][0]["loc"] in ("filter", "sort")
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Experiment)) == 1


def test_a_metric_clause_binds_its_value_so_quotes_in_names_are_just_text(client):
    submit(client, name="o'brien")
    r = client.get("/v1/experiments", params={"filter": 'name="o\'brien"'})
    assert r.status_code == 200 and len(r.json()["items"]) == 1


def test_recording_an_epoch_keeps_the_latest_value_and_ignores_an_older_step(client, sessions):
    eid = submit(client)["id"]
    with sessions.begin() as s:
        assert jobs.claim(s, eid, "w1", 60) is not None
    for step, acc in ((1, 0.5), (2, 0.6)):
        with sessions.begin() as s:
            assert jobs.record_epoch(s, eid, "w1", step, {"val_acc": acc}, 60)
    with sessions.begin() as s:
        latest.upsert(s, eid, 1, {"val_acc": 0.1})  # a late retry of epoch 1
    with sessions() as s:
        assert latest.latest(s, [eid]) == {eid: {"val_acc": 0.6}}


# --- sweeps -----------------------------------------------------------------------------------


def grid(**extra) -> dict[str, Any]:
    return {
        "name": "grid",
        "base": BASE,
        "space": {"regularizers[0].strength": [1e-4, 1e-2], "train.lr": [0.01, 0.1]},
        "seeds": 2,
        "metric": "val_acc",
        **extra,
    }


def test_a_sweep_launches_max_concurrent_and_the_tick_launches_the_rest(client, sessions):
    r = client.post("/v1/sweeps", json=grid(max_concurrent=3))
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/v1/sweeps/{r.json()['id']}"
    sweep = r.json()
    assert sweep["counts"]["queued"] == 3 and sweep["counts"]["pending"] == 5
    assert sweep["mode"] == "max" and len(sweep["experiments"]) == 8
    launched = [e["experiment_id"] for e in sweep["experiments"] if e["experiment_id"]]
    assert launched == [e["experiment_id"] for e in sweep["experiments"][:3]]

    with sessions.begin() as s:
        assert sweeps_repo.tick(s).launched == []  # still 3 active
    finish(sessions, launched[0])
    finish(sessions, launched[1], "failed")
    with sessions.begin() as s:
        tick = sweeps_repo.tick(s)
    assert len(tick.launched) == 2
    again = client.get(f"/v1/sweeps/{sweep['id']}").json()
    assert again["counts"]["queued"] == 3 and again["counts"]["pending"] == 3

    for _ in range(5):
        with sessions() as s:
            active = s.scalars(
                select(Experiment.id).where(
                    Experiment.sweep_id == sweep["id"], Experiment.status == "queued"
                )
            ).all()
        for eid in active:
            finish(sessions, eid, metrics={"val_acc": 0.5})
        with sessions.begin() as s:
            sweeps_repo.tick(s)
    done = client.get(f"/v1/sweeps/{sweep['id']}").json()
    assert done["status"] == "completed" and done["finished_at"] is not None
    assert done["counts"]["succeeded"] == 7 and done["counts"]["failed"] == 1


def test_the_results_table_and_best_come_from_the_succeeded_summaries(client, sessions):
    sweep = client.post("/v1/sweeps", json=grid(max_concurrent=8)).json()
    values = {}
    for e in sweep["experiments"]:
        acc = 0.5 + 0.1 * e["config"] + 0.01 * e["seed"]
        values.setdefault(e["config"], []).append(acc)
        finish(sessions, e["experiment_id"], metrics={"val_acc": acc, "val_loss": 1 - acc})
    res = client.get(f"/v1/sweeps/{sweep['id']}", params={"keys": "val_acc"}).json()["results"]
    assert res["keys"] == ["val_acc"]
    for row in res["table"]:
        mean = sum(values[row["config"]]) / 2
        assert row["metrics"]["val_acc"]["mean"] == pytest.approx(mean)
        # two seeds 0.01 apart: sd = 0.01/sqrt(2), half width = t(0.975, 1) * sd / sqrt(2)
        assert row["metrics"]["val_acc"]["ci_high"] - mean == pytest.approx(12.7062047 * 0.005)
    assert res["best"]["config"] == 3
    assert res["best"]["params"] == {"regularizers[0].strength": 1e-2, "train.lr": 0.1}

    png = client.get(f"/v1/sweeps/{sweep['id']}/plot", params={"x": "train.lr", "y": "val_acc"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")
    bad = client.get(f"/v1/sweeps/{sweep['id']}/plot", params={"x": "model.hidden"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == "x"
    no_conf = client.get(f"/v1/sweeps/{sweep['id']}/plot", params={"kind": "reliability"})
    assert no_conf.status_code == 422


def test_a_factorial_sweep_reports_main_effects_and_interactions(client, sessions):
    body = {
        "name": "ablation",
        "base": {**BASE, "regularizers": []},
        "method": "factorial",
        "factors": [{"name": "dropout", "p": 0.2}, {"name": "l2", "strength": 1e-3}],
        "seeds": 2,
        "max_concurrent": 8,
        "metric": "test_acc",
    }
    sweep = client.post("/v1/sweeps", json=body).json()
    assert len(sweep["experiments"]) == 8
    for e in sweep["experiments"]:
        on = {0: (0, 0), 1: (0, 1), 2: (1, 0), 3: (1, 1)}[e["config"]]
        acc = 0.6 + 0.1 * on[0] + 0.04 * on[1] + 0.002 * e["seed"]
        finish(sessions, e["experiment_id"], metrics={"test_acc": acc, "confidence": acc + 0.05})
    res = client.get(f"/v1/sweeps/{sweep['id']}").json()["results"]
    effects = res["effects"]["test_acc"]
    assert effects["main_effects"]["dropout"]["effect"] == pytest.approx(0.1)
    assert effects["main_effects"]["l2"]["effect"] == pytest.approx(0.04)
    assert effects["interactions"]["dropout:l2"]["effect"] == pytest.approx(0.0, abs=1e-12)
    assert (
        effects["main_effects"]["dropout"]["ci_low"]
        < 0.1
        < effects["main_effects"]["dropout"]["ci_high"]
    )
    assert res["best"]["params"] == {"dropout": True, "l2": True}
    png = client.get(f"/v1/sweeps/{sweep['id']}/plot", params={"kind": "reliability"})
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert client.get(f"/v1/sweeps/{sweep['id']}/plot", params={"x": "dropout"}).status_code == 200


def test_asha_on_rigged_metrics_stops_the_poor_running_trials_from_the_tick(client, sessions):
    body = {
        "base": BASE,
        "space": {"train.lr": [0.01, 0.02, 0.03, 0.04]},
        "metric": "val_acc",
        "max_concurrent": 4,
        "early_stopping": {"rule": "asha", "min_epochs": 1, "reduction_factor": 2},
    }
    sweep = client.post("/v1/sweeps", json=body).json()
    eids = [e["experiment_id"] for e in sweep["experiments"]]
    for i, eid in enumerate(eids):
        with sessions.begin() as s:
            s.execute(update(Experiment).where(Experiment.id == eid).values(status="running"))
        record(sessions, eid, 1, val_acc=[0.9, 0.3, 0.8, 0.2][i])
    with sessions.begin() as s:
        tick = sweeps_repo.tick(s)
    assert set(tick.stopped) == {eids[1], eids[3]}
    with sessions() as s:
        flags = dict(s.execute(select(Experiment.id, Experiment.cancel_requested)).all())
    assert [flags[e] for e in eids] == [False, True, False, True]
    view = client.get(f"/v1/sweeps/{sweep['id']}").json()
    reasons = [e["stop_reason"] for e in view["experiments"]]
    assert reasons[0] is None and reasons[1].startswith("stopped by ASHA at epoch 1")
    assert view["counts"]["stopped_early"] == 2
    with sessions.begin() as s:  # asked once: a second pass has nothing new to stop
        assert sweeps_repo.tick(s).stopped == {}


def test_cancelling_a_sweep_cancels_its_experiments_and_launches_nothing_more(client, sessions):
    sweep = client.post("/v1/sweeps", json=grid(max_concurrent=2)).json()
    r = client.post(f"/v1/sweeps/{sweep['id']}/cancel")
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled"
    assert r.json()["counts"]["cancelled"] == 2 and r.json()["counts"]["skipped"] == 6
    with sessions.begin() as s:
        assert sweeps_repo.tick(s).launched == []


def test_invalid_sweeps_answer_422_with_the_field(client):
    r = client.post("/v1/sweeps", json=grid(space={"regularizers[0].strength": [1e-3, -1]}))
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == "space.regularizers[0].strength"
    r = client.post("/v1/sweeps", json={"base": BASE, "method": "random"})
    assert r.status_code == 422 and "trials" in r.json()["errors"][0]["msg"]
    r = client.post("/v1/sweeps", json={**grid(), "early_stopping": {"rule": "x"}})
    assert r.status_code == 422
    assert client.get(f"/v1/sweeps/{'0' * 32}").status_code == 404
    assert client.get("/v1/sweeps/../etc").status_code == 404


# --- compare ----------------------------------------------------------------------------------


def test_compare_puts_summaries_side_by_side_and_aligns_series(client, sessions):
    a, b = submit(client)["id"], submit(client)["id"]
    record(sessions, a, 1, val_loss=1.0)
    record(sessions, a, 2, val_loss=0.8)
    record(sessions, b, 2, val_loss=0.9)
    record(sessions, b, 3, val_loss=0.7)
    finish(sessions, a, metrics={"test_acc": 0.8})
    finish(sessions, b, metrics={"test_acc": 0.7})
    r = client.get("/v1/compare", params={"ids": f"{a},{b}", "keys": "val_loss"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [e["id"] for e in body["items"]] == [a, b]
    assert body["table"]["test_acc"] == {a: 0.8, b: 0.7}
    assert body["series"]["val_loss"] == {
        "steps": [1, 2, 3],
        "values": {a: [1.0, 0.8, None], b: [None, 0.9, 0.7]},
    }
    # repeated ids parameters work too
    assert client.get("/v1/compare", params=[("ids", a), ("ids", b)]).status_code == 200


def test_compare_refuses_more_than_100_ids_and_unknown_ones(client):
    many = ",".join(f"{i:032x}" for i in range(101))
    r = client.get("/v1/compare", params={"ids": many})
    assert r.status_code == 422
    assert r.json()["errors"][0] == {
        "loc": "ids",
        "msg": "101 ids; compare at most 100 experiments at once",
    }
    assert client.get("/v1/compare", params={"ids": "0" * 32}).status_code == 404
    assert client.get("/v1/compare").status_code == 422


def test_another_owner_s_sweep_and_experiments_answer_404(client, sessions):
    from service.db import api_keys

    with sessions.begin() as s:
        _, alice = api_keys.create(s, "alice")
        _, bob = api_keys.create(s, "bob")
    as_alice = {"Authorization": f"Bearer {alice}"}
    as_bob = {"Authorization": f"Bearer {bob}"}
    sweep = client.post("/v1/sweeps", json=grid(max_concurrent=2), headers=as_alice).json()
    eid = sweep["experiments"][0]["experiment_id"]
    assert client.get(f"/v1/sweeps/{sweep['id']}", headers=as_alice).status_code == 200
    assert client.get(f"/v1/experiments/{eid}", headers=as_alice).status_code == 200
    for path in (f"/v1/sweeps/{sweep['id']}", f"/v1/sweeps/{sweep['id']}/plot"):
        assert client.get(path, headers=as_bob).status_code == 404
    assert client.post(f"/v1/sweeps/{sweep['id']}/cancel", headers=as_bob).status_code == 404
    assert client.get(f"/v1/experiments/{eid}", headers=as_bob).status_code == 404
    assert client.get("/v1/compare", params={"ids": eid}, headers=as_bob).status_code == 404
    assert client.get("/v1/sweeps", headers=as_bob).json()["items"] == []
