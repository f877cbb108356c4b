"""Filtering by what was run (params.), by tags, with in / or / parentheses; keyset cursors."""

from __future__ import annotations

import pytest

from service.db import latest
from service.db.models import Experiment, ExperimentParam
from service.db.params import flatten
from tests.api.conftest import spec, submit


def test_a_spec_flattens_to_paths_with_regularizers_keyed_by_name():
    run = {
        "model": {"name": "mlp", "hidden": [32], "bn": True},
        "regularizers": [{"name": "l2", "strength": 0.5}],
    }
    rows = set(flatten(run))
    assert rows == {
        ("model.name", None, "mlp"),
        ("model.hidden", None, "[32]"),
        ("model.bn", 1.0, "true"),
        ("regularizers", None, "l2"),
        ("regularizers.l2.strength", 0.5, None),
    }


@pytest.fixture
def runs(client, sessions):
    """Four runs: l2 strengths 1e-4 / 1e-2 (mlp), a cnn1d with dropout, one tagged."""
    made = {
        "weak": submit(client, spec(regularizers=[{"name": "l2", "strength": 1e-4}]))["id"],
        "strong": submit(client, spec(regularizers=[{"name": "l2", "strength": 1e-2}]))["id"],
        "cnn": submit(
            client,
            spec(
                model={"name": "cnn1d", "channels": [4]},
                regularizers=[{"name": "dropout", "p": 0.3}],
            ),
        )["id"],
        "plain": submit(client, spec(regularizers=[]))["id"],
    }
    with sessions.begin() as s:
        for name, acc in (("weak", 0.7), ("strong", 0.9), ("cnn", 0.95)):
            latest.upsert(s, made[name], 3, {"test_acc": acc})
    r = client.patch(f"/v1/experiments/{made['plain']}", json={"tags": {"team": "vision"}})
    assert r.status_code == 200, r.text
    return made


def ids(client, **params) -> set[str]:
    r = client.get("/v1/experiments", params={"limit": 500, **params})
    assert r.status_code == 200, r.text
    return {item["id"] for item in r.json()["items"]}


def test_params_are_written_at_submit(client, sessions, runs):
    with sessions() as s:
        paths = {
            p.path: (p.num_value, p.str_value)
            for p in s.query(ExperimentParam).filter_by(experiment_id=runs["strong"])
        }
    assert paths["regularizers.l2.strength"] == (0.01, None)
    assert paths["model.name"] == (None, "mlp")
    assert paths["train.epochs"] == (3.0, None)


def test_filter_by_a_parameter_a_metric_a_tag_with_or_in_and_parentheses(client, runs):
    assert ids(client, filter="params.regularizers.l2.strength>=1e-3") == {runs["strong"]}
    assert ids(client, filter="params.model.name=mlp") == {runs["weak"], runs["strong"],
                                                          runs["plain"]}  # fmt: skip
    assert ids(client, filter="params.model.name=cnn1d and test_acc>0.9") == {runs["cnn"]}
    assert ids(client, filter="params.regularizers=dropout") == {runs["cnn"]}
    assert ids(client, filter="tags.team=vision") == {runs["plain"]}
    assert ids(client, filter="tags.team!=vision") == set()  # a missing tag never matches
    assert ids(client, filter="test_acc>0.92 or tags.team=vision") == {runs["cnn"], runs["plain"]}
    assert ids(
        client, filter="(params.model.name=cnn1d or params.regularizers.l2.strength<1e-3) "
        "and test_acc>=0.7"
    ) == {runs["cnn"], runs["weak"]}  # fmt: skip
    assert ids(client, filter="params.regularizers.l2.strength in (0.0001, 0.01)") == {
        runs["weak"],
        runs["strong"],
    }
    assert ids(client, filter="status in (queued, running)") == set(runs.values())
    assert ids(client, filter="status in (failed)") == set()


def test_a_bad_filter_is_422_naming_filter(client, runs):
    r = client.get("/v1/experiments", params={"filter": "params.model.name>mlp"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == "filter"
    assert "=, != or in" in r.json()["errors"][0]["msg"]


@pytest.mark.parametrize("sort", ["-test_acc", "test_acc", "name", "-created_at", None])
def test_cursor_pages_of_any_sort_cover_every_run_once_in_order(client, sessions, sort):
    made = [submit(client, spec(name=f"run-{i % 3}"))["id"] for i in range(7)]
    with sessions.begin() as s:
        for i, eid in enumerate(made[:5]):  # two runs have no test_acc: they sort last
            latest.upsert(s, eid, 1, {"test_acc": [0.5, 0.9, 0.5, 0.1, 0.7][i]})
    params = {"limit": 2, **({"sort": sort} if sort else {})}
    first = client.get("/v1/experiments", params={**params, "limit": 50})
    whole = [i["id"] for i in first.json()["items"]]
    seen, cursor = [], None
    while True:
        r = client.get(
            "/v1/experiments", params={**params, **({"cursor": cursor} if cursor else {})}
        )
        assert r.status_code == 200, r.text
        seen += [i["id"] for i in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == whole and sorted(seen) == sorted(made)
    if sort == "-test_acc":
        with sessions() as s:
            acc = {eid: v.get("test_acc") for eid, v in latest.latest(s, seen).items()}
        values = [acc[e] for e in seen]
        assert values[:5] == sorted(values[:5], reverse=True) and values[5:] == [None, None]


@pytest.mark.parametrize(
    "flt",
    ["test_acc>0.3", "test_acc>0.3 and params.model.name=mlp", "test_acc<0.6 or test_acc>0.8",
     "test_acc!=0.5", "test_acc in (0.1, 0.9)"],
)  # fmt: skip
def test_a_filter_on_the_sorted_metric_matches_what_it_matches_unsorted(client, sessions, flt):
    # sorted by test_acc, a top-level clause on test_acc reads the sort's join, not an EXISTS:
    # the runs with no test_acc must still fall out, and pages must still cover the matches
    made = [submit(client)["id"] for _ in range(6)]
    with sessions.begin() as s:
        for eid, acc in zip(made[:4], (0.5, 0.9, 0.1, 0.7), strict=True):
            latest.upsert(s, eid, 1, {"test_acc": acc})
    expected = ids(client, filter=flt)
    assert expected and expected <= set(made[:4])
    for sort in ("-test_acc", "test_acc"):
        seen, cursor = [], None
        while True:
            page = {"filter": flt, "sort": sort, "limit": 1}
            page |= {"cursor": cursor} if cursor else {}
            r = client.get("/v1/experiments", params=page)
            assert r.status_code == 200, r.text
            seen += [i["id"] for i in r.json()["items"]]
            if (cursor := r.json()["next_cursor"]) is None:
                break
        assert len(seen) == len(expected) and set(seen) == expected, (flt, sort)


def test_a_cursor_this_server_did_not_make_is_422(client):
    for bad in ("o10", "bm90IGpzb24", "WzEsIDJd"):
        r = client.get("/v1/experiments", params={"cursor": bad, "sort": "-test_acc"})
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "cursor", r.text


def test_lists_are_lean_unless_view_full(client, sessions):
    eid = submit(client)["id"]
    with sessions.begin() as s:
        row = s.get(Experiment, eid)
        metrics = {"test_acc": 0.8, "weight_l2": 2.0}
        row.summary = {"status": "succeeded", "epochs_run": 3, "metrics": metrics}
    brief = client.get("/v1/experiments").json()["items"][0]
    assert set(brief) == {"id", "name", "status", "created_at", "started_at", "finished_at",
                          "metrics", "tags", "sweep_id", "progress"}  # fmt: skip
    assert brief["metrics"] == {"test_acc": 0.8, "epochs_run": 3.0}  # headline only
    full = client.get("/v1/experiments", params={"view": "full"}).json()["items"][0]
    assert full["spec"]["model"]["name"] == "mlp" and full["summary"]["metrics"]["weight_l2"] == 2


def test_sweeps_list_pages_by_cursor(client, sessions):
    from service.db.models import Sweep

    with sessions.begin() as s:
        for i in range(5):
            s.add(
                Sweep(name=f"s{i}", owner="", status="completed", method="grid", request={},
                      configs=[], factors=[], metric="val_loss", mode="min", max_concurrent=1)
            )  # fmt: skip
    seen, cursor = [], None
    for _ in range(5):
        r = client.get("/v1/sweeps", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        seen += [i["name"] for i in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == [f"s{i}" for i in range(5)] and len(seen) == 5
