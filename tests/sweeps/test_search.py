"""``service.sweeps.search``: cocktail space, study rebuilt from rows, samplers, pruners,
importances; and search against random on a cocktail whose best is known by construction.

The objective here is a closed-form stand-in for training (a run per trial would take minutes
per sweep on this machine): a noisy classification problem where only label smoothing at
ε ≈ 0.15 helps, every other regularizer in the space costs accuracy, and the learning rate has
its best at 0.05. "Found" means the best trial within the budget (40 trials, asked 4 at a time,
as a sweep with max_concurrent 4 would) has exactly label_smoothing on.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from service.sweeps.search import (
    Past,
    SearchSpace,
    config_spec,
    importances,
    parse_search_space,
    propose,
    prune,
)
from service.sweeps.space import SpaceError

RAW = {
    "train.lr": {"log_uniform": [0.005, 0.5]},
    "regularizers": {
        "l2": {"strength": {"log_uniform": [1e-5, 1e-1]}},
        "dropout": {"p": {"uniform": [0.0, 0.7]}},
        "label_smoothing": {"epsilon": {"uniform": [0.0, 0.4]}},
        "mixup": {"alpha": {"uniform": [0.1, 1.0]}},
        "early_stopping": {"patience": [3, 10], "monitor": "val_loss"},
    },
}
SPACE = parse_search_space(RAW)
BEST = 0.9


def accuracy(c: dict, rng: random.Random) -> float:
    acc = BEST - 0.05 * math.log10(c["train.lr"] / 0.05) ** 2
    acc -= 0.06 * (1 - math.exp(-(((c.get("label_smoothing.epsilon", 0.0)) - 0.15) ** 2) / 0.002))
    # label smoothing off is epsilon 0: 0.06 below the best
    acc -= 0.03 * c["on.l2"] + 0.04 * c["on.dropout"] + 0.05 * c["on.mixup"]
    acc -= 0.02 * c["on.early_stopping"]
    return acc + rng.gauss(0, 0.002)


def search(
    space: SearchSpace, objective: Callable[[dict], float], sampler: str, seed: int,
    budget: int, batch: int,
) -> list[tuple[dict, float]]:  # fmt: skip
    """A sweep's scheduler loop: ask ``batch`` trials, run them, rebuild, until the budget;
    each trial's configuration and objective (maximized), in the order asked."""
    past: list[Past] = []
    trials = []
    while len(past) < budget:
        for p in propose(space, past, min(batch, budget - len(past)), "max", sampler, seed):
            value = objective(p.config)
            past.append(Past(p.params, "complete", value))
            trials.append((p.config, value))
    return trials


def found(sampler: str, seed: int, budget: int = 40, batch: int = 4) -> bool:
    rng = random.Random(1000 + seed)
    trials = search(SPACE, lambda c: accuracy(c, rng), sampler, seed, budget, batch)
    c, _ = max(trials, key=lambda t: t[1])
    ons = {k[3:] for k, v in c.items() if k.startswith("on.") and v}
    return ons == {"label_smoothing"}


@pytest.mark.slow
def test_tpe_finds_the_known_best_cocktail_more_often_than_random() -> None:
    tpe = sum(found("tpe", s) for s in range(5))
    rnd = sum(found("random", s) for s in range(5))
    print(f"found the best cocktail: tpe {tpe}/5, random {rnd}/5")
    assert tpe > rnd
    assert tpe >= 3


def test_a_strength_exists_only_when_its_regularizer_is_on() -> None:
    props = propose(SPACE, [], 30, "max", "random", seed=3)
    for p in props:
        for name in RAW["regularizers"]:
            on = p.config[f"on.{name}"]
            assert any(k.startswith(f"{name}.") for k in p.config) == on
    assert {p.config["on.l2"] for p in props} == {False, True}
    spec = config_spec({"regularizers": [{"name": "l1"}], "train": {}}, SPACE, props[0].config)
    names = [r["name"] for r in spec["regularizers"]]
    assert names[0] == "l1" and set(names[1:]) == {
        n for n in RAW["regularizers"] if props[0].config[f"on.{n}"]
    }
    es = [p.config for p in props if p.config["on.early_stopping"]][0]
    assert es["early_stopping.monitor"] == "val_loss" and es["early_stopping.patience"] in (3, 10)


def test_the_same_rows_give_the_same_proposals_and_new_rows_new_ones() -> None:
    a = propose(SPACE, [], 3, "max", "tpe", seed=1)
    b = propose(SPACE, [], 3, "max", "tpe", seed=1)
    assert [p.params for p in a] == [p.params for p in b]
    past = [Past(p.params, "complete", 0.5) for p in a]
    c = propose(SPACE, past, 3, "max", "tpe", seed=1)
    assert [p.params for p in c] != [p.params for p in a]


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes"])
def test_every_sampler_proposes_valid_configurations(sampler: str) -> None:
    past: list[Past] = []
    rng = random.Random(0)
    for _ in range(3):
        for p in propose(SPACE, past, 4, "max", sampler, seed=0):
            assert 0.005 <= p.config["train.lr"] <= 0.5
            past.append(Past(p.params, "complete", accuracy(p.config, rng)))
    assert len(past) == 12


def test_successive_halving_prunes_a_running_trial_below_the_rung() -> None:
    good = [
        Past(p.params, "complete", 0.9, {1: 0.8, 2: 0.85, 3: 0.9})
        for p in propose(SPACE, [], 6, "max", "random", seed=0)
    ]
    bad, fine = propose(SPACE, good, 2, "max", "random", seed=1)
    running = [
        Past(bad.params, "running", None, {1: 0.1}),
        Past(fine.params, "running", None, {1: 0.95}),
    ]
    verdicts = prune(SPACE, good + running, "max", "successive_halving", min_epochs=1)
    assert verdicts == [True, False]


def test_importances_rank_the_switch_that_matters() -> None:
    rng = random.Random(0)
    past = [
        Past(p.params, "complete", accuracy(p.config, rng))
        for p in propose(SPACE, [], 40, "max", "random", seed=2)
    ]
    imp = importances(SPACE, past, "max")
    assert set(imp) >= {"on.mixup", "on.l2", "train.lr"}
    assert imp["on.mixup"] > imp["on.early_stopping"]


def test_a_bad_cocktail_names_the_field() -> None:
    with pytest.raises(SpaceError) as err:
        parse_search_space({"regularizers": {"l2": {"strength": {"uniform": [1, 0]}}}})
    assert err.value.field == "space.regularizers.l2.strength"
    with pytest.raises(SpaceError):
        parse_search_space({})


# --- through the API: a search sweep asks for its next trials as the earlier ones end ----------


def test_a_search_sweep_asks_for_trials_as_they_end_until_its_budget(client, sessions):
    from sqlalchemy import select

    from service.db import sweeps as sweeps_repo
    from service.db.models import Experiment
    from tests.sweeps.test_api import BASE, finish

    body = {
        "name": "cocktail",
        "base": {**BASE, "regularizers": []},
        "method": "search",
        "space": {
            "train.lr": {"log_uniform": [0.01, 0.3]},
            "regularizers": {"label_smoothing": {"epsilon": {"uniform": [0.0, 0.3]}}},
        },
        "trials": 5,
        "max_concurrent": 2,
        "metric": "val_acc",
    }
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 202, r.text
    sid = r.json()["id"]
    assert len(r.json()["experiments"]) == 2  # the first batch; the rest is asked later
    for _ in range(5):
        with sessions() as s:
            active = s.scalars(
                select(Experiment).where(Experiment.sweep_id == sid, Experiment.status == "queued")
            ).all()
            done = [(e.id, e.spec) for e in active]
        for eid, spec in done:
            ls = [g for g in spec["regularizers"] if g["name"] == "label_smoothing"]
            finish(sessions, eid, metrics={"val_acc": 0.5 + (0.2 if ls else 0.0)})
        with sessions.begin() as s:
            sweeps_repo.tick(s)
    got = client.get(f"/v1/sweeps/{sid}").json()
    assert got["status"] == "completed", got["counts"]
    assert len(got["experiments"]) == 5 and got["counts"]["succeeded"] == 5
    found = got["results"]["search"]
    assert [h["trial"] for h in found["history"]] == list(range(5))
    values = [h["value"] for h in found["history"]]
    assert found["best"]["value"] == max(values)
    assert found["history"][-1]["best_so_far"] == max(values)
    assert found["best"]["config"]["on.label_smoothing"] is (max(values) > 0.6)
    if len(set(values)) > 1:
        assert set(found["importances"]) >= {"on.label_smoothing", "train.lr"}


def test_a_search_sweep_without_a_budget_or_with_seeds_is_422(client):
    from tests.sweeps.test_api import BASE

    body = {"base": BASE, "method": "search", "space": {"train.lr": [0.01, 0.1]}}
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 422 and "budget" in r.text
    r = client.post("/v1/sweeps", json={**body, "trials": 4, "seeds": 2})
    assert r.status_code == 422 and "seeds" in r.text
    bad = {
        **body,
        "trials": 4,
        "space": {"regularizers": {"l2": {"strength": {"uniform": [1, 0]}}}},
    }
    r = client.post("/v1/sweeps", json=bad)
    assert r.status_code == 422 and "space.regularizers.l2.strength" in r.text


def test_optuna_successive_halving_stops_the_poor_running_search_trials(client, sessions):
    from sqlalchemy import update

    from service.db import sweeps as sweeps_repo
    from service.db.models import Experiment
    from tests.sweeps.test_api import BASE, record

    body = {
        "base": BASE,
        "method": "search",
        "sampler": "random",
        "space": {"train.lr": {"uniform": [0.01, 0.1]}},
        "trials": 4,
        "max_concurrent": 4,
        "metric": "val_acc",
        "early_stopping": {"rule": "successive_halving", "min_epochs": 1, "reduction_factor": 2},
    }
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 202, r.text
    eids = [e["experiment_id"] for e in r.json()["experiments"]]
    for i, eid in enumerate(eids):
        with sessions.begin() as s:
            s.execute(update(Experiment).where(Experiment.id == eid).values(status="running"))
        record(sessions, eid, 1, val_acc=[0.9, 0.3, 0.8, 0.2][i])
    with sessions.begin() as s:
        stopped = sweeps_repo.tick(s).stopped
    assert eids[0] not in stopped and {eids[1], eids[3]} <= set(stopped)
    assert all(v.startswith("successive_halving (Optuna)") for v in stopped.values())
    with sessions.begin() as s:  # asked once: a second pass has nothing new to stop
        assert sweeps_repo.tick(s).stopped == {}


def test_optuna_pruners_are_for_search_sweeps_only(client):
    from tests.sweeps.test_api import BASE

    body = {"base": BASE, "space": {"train.lr": [0.01, 0.1]},
            "early_stopping": {"rule": "hyperband"}}  # fmt: skip
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 422 and "method search" in r.text


def test_reglab_sweep_prints_a_search_sweep_s_importances(capsys):
    from reglab.sweep_cli import print_results

    sweep = {
        "id": "s1", "name": "cocktail", "status": "completed", "counts": {"succeeded": 2},
        "results": {
            "metric": "val_acc", "keys": ["val_acc"], "best": {"config": 1},
            "table": [{"config": 0, "params": {"on.l2": False}, "n": 1, "metrics": {}},
                      {"config": 1, "params": {"on.l2": True}, "n": 1, "metrics": {}}],
            "search": {"importances": {"on.l2": 0.75, "train.lr": 0.25}},
        },
    }  # fmt: skip
    print_results(sweep, fmt="tsv")
    out = capsys.readouterr().out
    assert "# importances" in out and "on.l2\t0.750" in out and "train.lr\t0.250" in out
